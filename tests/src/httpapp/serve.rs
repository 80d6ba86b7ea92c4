//! `serve`: one listener, a task per connection, HTTP/1.1 and h2c (prior knowledge) told apart
//! by hyper-util's auto builder; each request goes to the echo or the gRPC handler, and a
//! WebSocket upgrade to the upgrade echo.

use std::{convert::Infallible, sync::Arc, time::Duration};

use hyper::{Request, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use super::{
    args::{ServeArgs, ServeProtocol},
    echo,
    emit::emit,
    grpc,
    script::Attempts,
    upgrade,
};

/// One boxed body type for both handlers (tonic's, which the gRPC handler returns anyway).
pub(super) type ResponseBody = tonic::body::Body;

/// What every connection of one server shares.
pub(super) struct State {
    pub(super) name: String,
    pub(super) attempts: Attempts,
}

/// Listens (reporting the bound address, so `--listen 127.0.0.1:0` works) and serves forever.
pub(super) async fn run(args: ServeArgs) -> Result<(), String> {
    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| format!("the listener on {} has no address: {e}", args.listen))?;
    emit(&json!({
        "event": "listening",
        "addr": addr.to_string(),
        "name": args.name,
        "protocol": args.protocol.name(),
    }));
    let state = Arc::new(State { name: args.name, attempts: Attempts::default() });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, state.clone(), args.protocol));
            }
            Err(e) => {
                // Out of file descriptors and the like: report, back off, keep serving.
                emit(&json!({"event": "error", "message": format!("accept on {addr}: {e}")}));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>, protocol: ServeProtocol) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map(|p| p.to_string()).unwrap_or_default();
    let service = service_fn(move |request: Request<Incoming>| {
        let state = state.clone();
        async move {
            Ok::<_, Infallible>(match protocol {
                ServeProtocol::Http if upgrade::is_websocket(&request) => upgrade::accept(&state.name, request),
                ServeProtocol::Http => echo::answer(&state, request).await,
                ServeProtocol::Grpc => grpc::server::answer(&state, request).await,
            })
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        emit(&json!({"event": "connection-error", "peer": peer, "message": e.to_string()}));
    }
}
