//! The HTTP handler: reads the request, applies the control headers ([`super::script`]) and
//! answers with a JSON echo of what it saw.

use bytes::Bytes;
use http::{Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Incoming};
use serde_json::{Value, json};

use super::{
    emit::emit,
    observed::Observed,
    script::Script,
    serve::{ResponseBody, State},
};

/// Answers one request. The `request` event is emitted once the body is read and the status
/// decided, before any scripted delay: a caller that gives up during the delay still counts.
pub(super) async fn answer(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let seen = Observed::of(&parts);
    let body_bytes = match body.collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(e) => {
            let message = format!("reading the request body: {e}");
            emit(&seen.event(json!({"status": 400, "error": message})));
            return reply(StatusCode::BAD_REQUEST, &json!({"servedBy": state.name, "error": message}));
        }
    };
    let script = match Script::from_headers(&parts.headers) {
        Ok(script) => script,
        Err(message) => {
            emit(&seen.event(json!({"status": 400, "bodyBytes": body_bytes, "error": message})));
            return reply(StatusCode::BAD_REQUEST, &json!({"servedBy": state.name, "error": message}));
        }
    };
    let status = if script.fails_on(&state.name) || script.fails_first(&state.attempts) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        script.status.unwrap_or(StatusCode::OK)
    };
    emit(&seen.event(json!({"status": status.as_u16(), "bodyBytes": body_bytes})));
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    if script.brief {
        return reply(status, &json!({"servedBy": state.name}));
    }
    reply(status, &echo_body(&state.name, &seen, body_bytes))
}

fn echo_body(name: &str, seen: &Observed, body_bytes: usize) -> Value {
    json!({
        "servedBy": name,
        "method": seen.method,
        "path": seen.path,
        "authority": seen.authority,
        "protocol": seen.protocol,
        "headers": seen.headers,
        "bodyBytes": body_bytes,
    })
}

fn reply(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}
