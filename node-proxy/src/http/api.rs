//! The pod-event API (see `ambit_common::pod_api` for the protocol).

use std::{io, path::Path, sync::Arc};

use ambit_common::{
    http_server::{Body, Incoming, Method, Request, Response, StatusCode, error, json, read_body, serve_connection},
    pod_api::PodSpec,
};
use tokio::net::UnixListener;

use crate::pods::{Pods, UpsertError};

/// Binds the unix socket (replacing a stale one from a previous instance) and serves it.
pub(crate) fn serve(path: &Path, pods: Pods) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    let pods = Arc::new(pods);
    let handler = Arc::new(move |req| handle(pods.clone(), req));
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => serve_connection(stream, handler.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "pod API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(())
}

async fn handle(pods: Arc<Pods>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let uid = path.strip_prefix("/v1/pods/").filter(|uid| !uid.is_empty() && !uid.contains('/'));
    match (req.method().clone(), path.as_str(), uid) {
        (Method::POST, "/v1/pods", _) => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            let spec: PodSpec = match serde_json::from_slice(&body) {
                Ok(spec) => spec,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid pod: {e}")),
            };
            match pods.upsert(spec).await {
                Ok(status) => json(StatusCode::OK, &status),
                Err(e) => error(status_for(&e), e.to_string()),
            }
        }
        (Method::DELETE, _, Some(uid)) => match pods.delete(uid.to_owned()).await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({ "deleted": uid })),
            Err(e) => error(status_for(&e), e.to_string()),
        },
        (Method::GET, "/v1/pods", _) => {
            let statuses: Vec<_> = pods.snapshot().iter().map(|view| view.status.clone()).collect();
            json(StatusCode::OK, &statuses)
        }
        (Method::GET, _, Some(uid)) => match pods.snapshot().iter().find(|view| view.status.uid == uid) {
            Some(view) => json(StatusCode::OK, &view.status),
            None => error(StatusCode::NOT_FOUND, format!("no pod with uid {uid} on this node")),
        },
        (method, path, _) => error(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path}: use POST /v1/pods, GET /v1/pods[/{{uid}}], DELETE /v1/pods/{{uid}}"),
        ),
    }
}

fn status_for(e: &UpsertError) -> StatusCode {
    match e {
        UpsertError::Invalid(_) | UpsertError::WrongNode { .. } => StatusCode::BAD_REQUEST,
        UpsertError::Enroll { .. } | UpsertError::Persist { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        UpsertError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}
