//! The control plane's admin API:
//!
//! | path | what |
//! |---|---|
//! | `/ready` | 200 once the first configuration is compiled and the gRPC server listens |
//! | `/metrics` | Prometheus metrics: pushes, push latency, connected proxies, rejected objects |
//! | `/rejections` | config objects currently rejected, with errors naming object and field |
//! | `/subscribers` | connected proxies, the versions sent and acknowledged, NACKs |
//! | `/config_dump` | the effective config objects (validated model) |
//! | `/config_dump?proxy=node/<name>` or `?proxy=waypoint/<ns>/<name>` | what that proxy receives |
//! | `/ca` | the CA: root fingerprint and expiry, trust bundle file, certificates issued, last issuance |

use std::{net::SocketAddr, sync::Arc};

use ambit_common::{
    api::v1::Resource,
    http_server::{Body, Incoming, Request, Response, StatusCode, error, json, query_param, serve_tcp, text},
};
use prost::Message;
use serde_json::json;
use tokio::sync::watch;

use crate::{
    ca::Ca,
    metrics::Metrics,
    pipeline::Pipeline,
    push::{
        Subscriptions,
        state::{PushState, Scope},
    },
};

pub struct AdminState {
    pub pipeline: Arc<Pipeline>,
    pub subscriptions: Arc<Subscriptions>,
    pub state: watch::Receiver<Arc<PushState>>,
    pub metrics: Arc<Metrics>,
    pub config: serde_json::Value,
    /// The CA, when this control plane runs one.
    pub ca: Option<Arc<Ca>>,
}

pub async fn serve(addr: SocketAddr, admin: Arc<AdminState>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_tcp(listener, move |req| {
        let response = handle(&admin, &req);
        async move { response }
    });
    Ok(())
}

fn handle(admin: &AdminState, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/ready" => {
            let status = admin.pipeline.status();
            if status.ready {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "waiting for the first complete configuration reading\n")
            }
        }
        "/metrics" => {
            let mut out = admin.metrics.render(admin.subscriptions.registry.counts());
            if let Some(ca) = &admin.ca {
                ca.render_metrics(&mut out);
            }
            text(StatusCode::OK, out)
        }
        "/ca" => match &admin.ca {
            Some(ca) => json(StatusCode::OK, &ca.status()),
            None => error(
                StatusCode::NOT_FOUND,
                "this control plane runs without a CA (--plaintext-grpc without --ca-dir)".to_owned(),
            ),
        },
        "/rejections" => {
            let rejections: Vec<_> = admin
                .pipeline
                .status()
                .rejections
                .iter()
                .map(|r| json!({ "text": r.error.to_string(), "lastGoodKept": r.last_good_kept, "error": r.error }))
                .collect();
            json(StatusCode::OK, &rejections)
        }
        "/subscribers" => json(StatusCode::OK, &admin.subscriptions.registry.list()),
        "/config_dump" => match query_param(req, "proxy") {
            Some(proxy) => proxy_dump(admin, proxy),
            None => {
                let status = admin.pipeline.status();
                let objects: Vec<_> = status.snapshot.iter().map(|(_, object)| object).collect();
                json(StatusCode::OK, &json!({ "config": admin.config, "status": status, "objects": objects }))
            }
        },
        "/" => json(
            StatusCode::OK,
            &json!({ "endpoints": ["/ready", "/metrics", "/rejections", "/subscribers", "/ca", "/config_dump[?proxy=node/<name>|waypoint/<ns>/<name>]"] }),
        ),
        other => error(StatusCode::NOT_FOUND, format!("no admin endpoint {other}; GET / lists them")),
    }
}

fn proxy_dump(admin: &AdminState, proxy: &str) -> Response<Body> {
    let scope = match proxy.split('/').collect::<Vec<_>>().as_slice() {
        ["node", name] => Scope::Node { name: (*name).to_owned() },
        ["waypoint", namespace, name] => {
            Scope::Waypoint { namespace: (*namespace).to_owned(), name: (*name).to_owned() }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("proxy={proxy}: use node/<name> or waypoint/<namespace>/<name>"),
            );
        }
    };
    let state = admin.state.borrow().clone();
    let view = state.view(&scope);
    let resources: Vec<Resource> = view
        .shared
        .resources
        .values()
        .chain(view.extras.values())
        .filter_map(|encoded| Resource::decode(encoded.bytes.clone()).ok())
        .collect();
    json(StatusCode::OK, &json!({ "proxy": scope, "version": state.version, "resources": resources }))
}
