//! The admin API (`--admin`, 127.0.0.1:15020):
//!
//! | path | what |
//! |---|---|
//! | `/ready` | 200 once a configuration is applied and the certificate is held, 503 before |
//! | `/config_dump` | the flags, the subscription, the identity, the compiled route tables and clusters (endpoints, ejections, pools, breakers) |
//! | `/stats` | request, stream and connection counters |
//! | `/requests?after=<id>` | access records of HTTP requests (oldest first) |
//! | `/connections?after=<id>` | access records of TCP-route connections (oldest first) |

use std::{net::SocketAddr, sync::Arc};

use ambit_common::{
    discovery::ConnectionStatus,
    http_server::{Body, Incoming, Method, Request, Response, StatusCode, error, json, query_param, serve_tcp, text},
};
use serde_json::{Value, json as json_value};
use tokio::{net::TcpListener, sync::watch};

use crate::proxy::Waypoint;

pub struct AdminState {
    pub waypoint: Arc<Waypoint>,
    /// The effective flags, as `--print-config` shows them.
    pub config: Value,
    pub subscription: watch::Receiver<ConnectionStatus>,
}

impl AdminState {
    pub fn ready(&self) -> bool {
        self.waypoint.config.has_config() && self.waypoint.identity.cert().is_some()
    }
}

/// Binds `addr` and serves the admin API on it.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    serve_tcp(listener, move |req| {
        let response = handle(&state, &req);
        async move { response }
    });
    Ok(bound)
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "the admin API is read-only: use GET");
    }
    let wp = &state.waypoint;
    match req.uri().path() {
        "/ready" if state.ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => {
            text(StatusCode::SERVICE_UNAVAILABLE, "starting (no configuration applied or no certificate yet)\n")
        }
        "/config_dump" => {
            let cert = wp.identity.cert();
            let secs = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            json(
                StatusCode::OK,
                &json_value!({
                    "config": state.config,
                    "subscription": *state.subscription.borrow(),
                    "identity": {
                        "id": wp.identity.id().to_string(),
                        "held": cert.is_some(),
                        "notAfterUnix": cert.as_ref().map(|c| secs(c.not_after())),
                        "refreshAtUnix": cert.as_ref().map(|c| secs(c.refresh_at())),
                    },
                    "snapshot": wp.config.current().dump(),
                }),
            )
        }
        "/stats" => json(StatusCode::OK, &wp.stats.view()),
        "/requests" => {
            let after = query_param(req, "after").and_then(|v| v.parse().ok()).unwrap_or(0);
            json(StatusCode::OK, &wp.records.after(after))
        }
        "/connections" => {
            let after = query_param(req, "after").and_then(|v| v.parse().ok()).unwrap_or(0);
            json(StatusCode::OK, &wp.records.connections_after(after))
        }
        "/" => json(
            StatusCode::OK,
            &json_value!({ "endpoints": ["/ready", "/config_dump", "/stats", "/requests?after=<id>", "/connections?after=<id>"] }),
        ),
        other => error(StatusCode::NOT_FOUND, format!("no admin endpoint {other}; GET / lists them")),
    }
}
