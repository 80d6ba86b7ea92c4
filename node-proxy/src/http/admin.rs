//! The admin API on 127.0.0.1:15000:
//!
//! | path | what |
//! |---|---|
//! | `/ready` | 200 once the node proxy serves traffic, 503 before |
//! | `/config_dump` | effective config, namespaces, every known pod and its capture state, and the kernel's view of attached programs |
//! | `/stats` | eBPF decision counters, live map entries, connection totals |
//! | `/connections?after=<id>` | recent connection records (oldest first) |

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use ambit_common::{
    http_server::{
        Body, Incoming, Method, Request, Response, StatusCode, error, json as json_response, query_param, serve_tcp,
        text,
    },
    netns::Netns,
};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::{
    capture::{Capture, PruneReport},
    cluster::ClusterSource,
    config::Config,
    pods::Pods,
    proxy::ProxyContext,
};

pub(crate) struct AdminState {
    pub(crate) config: Config,
    pub(crate) pods: Pods,
    pub(crate) proxy: Arc<ProxyContext>,
    pub(crate) cluster_source: ClusterSource,
    pub(crate) startup_prune: PruneReport,
    pub(crate) ready: AtomicBool,
}

impl AdminState {
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

pub(crate) async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_tcp(listener, move |req| {
        let response = handle(&state, &req);
        async move { response }
    });
    Ok(())
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "the admin API is read-only: use GET");
    }
    match req.uri().path() {
        "/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        "/config_dump" => json_response(StatusCode::OK, &config_dump(state)),
        "/stats" => json_response(StatusCode::OK, &stats(&state.proxy)),
        "/connections" => {
            let after = query_param(req, "after").and_then(|v| v.parse().ok()).unwrap_or(0);
            json_response(StatusCode::OK, &state.proxy.records.recent(after))
        }
        "/" => json_response(
            StatusCode::OK,
            &json!({ "endpoints": ["/ready", "/config_dump", "/stats", "/connections?after=<id>"] }),
        ),
        other => error(StatusCode::NOT_FOUND, format!("no admin endpoint {other}; GET / lists them")),
    }
}

fn stats(proxy: &ProxyContext) -> Value {
    let counters: Map<String, Value> =
        proxy.capture.counters().into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
    json!({
        "counters": counters,
        "maps": proxy.capture.map_sizes(),
        "connections": proxy.records.totals(),
    })
}

fn config_dump(state: &AdminState) -> Value {
    let capture = &state.proxy.capture;
    let attached_at_root = match capture.attached_at_root() {
        Ok(hooks) => hooks.into_iter().map(|(name, ids)| (name.to_owned(), json!(ids))).collect::<Map<_, _>>().into(),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let pods: Vec<Value> = state
        .pods
        .snapshot()
        .iter()
        .map(|view| {
            let mut pod = serde_json::to_value(view).unwrap_or(Value::Null);
            if view.capture.is_some() {
                // The kernel's own view: exactly one sk_lookup program should be attached.
                pod["skLookupAttached"] =
                    match Netns::open(&view.status.spec.netns).and_then(|ns| Capture::attached_in_netns(&ns)) {
                        Ok(ids) => json!(ids),
                        Err(e) => json!({ "error": e.to_string() }),
                    };
            }
            pod
        })
        .collect();
    json!({
        "node": state.config.node_name,
        "config": state.config,
        "clusterSource": state.cluster_source.status(),
        "identity": match &state.proxy.hbone {
            Some(hbone) => json!({
                "trustDomain": hbone.trust_domain,
                "certificates": hbone.certs.status(),
                "liveInboundConnections": state.proxy.live.len(),
            }),
            None => json!({ "disabled": "no TLS control plane: captured traffic is carried as plain TCP" }),
        },
        "meshVersion": state.proxy.mesh.borrow().version,
        "pods": pods,
        "capture": {
            "pins": capture.pins(),
            "cgroupLinks": capture.cgroup_links(),
            "attachedAtRoot": attached_at_root,
            "startupPrune": state.startup_prune,
        },
        "stats": stats(&state.proxy),
    })
}
