//! Port 15008 of an enrolled pod. HBONE (HTTP/2 CONNECT over mTLS) is not implemented yet: the
//! listener exists so capture steers 15008 correctly, and every connection is reset and recorded
//! as such rather than silently accepted.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{PodContext, ProxyContext, relay};
use crate::records::{Closing, Direction, Outcome};

pub(super) async fn handle(ctx: &ProxyContext, pod: &PodContext, client: TcpStream, peer: SocketAddr) {
    let destination = client.local_addr().unwrap_or(peer);
    let conn = ctx.records.open(Direction::Inbound, pod.pod.clone(), peer, destination);
    relay::reset(&client);
    ctx.records.close(conn, Closing::failed(Outcome::HboneNotImplemented, "HBONE is not implemented yet"));
}
