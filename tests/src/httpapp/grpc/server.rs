//! The gRPC handler: `ambit.test.Echo/Call` served by hand through `tonic::server::Grpc`, which
//! decodes the request and encodes the answer (status in trailers, or trailers-only on error).

use std::{
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use http::Response;
use hyper::{Request, body::Incoming};
use prost::Message;
use serde_json::json;
use tonic::{Code, Status, metadata::MetadataValue, server::UnaryService};
use tonic_prost::ProstCodec;

use super::{CALL_PATH, EchoReply, EchoRequest};
use crate::httpapp::{
    emit::emit,
    observed::{Observed, headers_json},
    script::Script,
    serve::{ResponseBody, State},
};

/// Metadata naming the server on every answer, error statuses included, so a client can tell
/// which backend failed.
pub(in crate::httpapp) const SERVED_BY: &str = "x-httpapp-served-by";

/// Answers one request. Emits the `request` event (with `grpcStatus`) before any delay, or, when
/// the call never reached the method (wrong path, undecodable message), after tonic's answer.
pub(in crate::httpapp) async fn answer(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let seen = Observed::of(&parts);
    if parts.uri.path() != CALL_PATH {
        emit(&seen.event(json!({"status": 200, "grpcStatus": Code::Unimplemented as i32})));
        let message = format!("{} serves only {CALL_PATH}, not {}", state.name, parts.uri.path());
        return Status::unimplemented(message).into_http();
    }
    let reported = AtomicBool::new(false);
    let call = Call { state, seen: &seen, reported: &reported };
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    let response = grpc.unary(call, Request::from_parts(parts, body)).await;
    if !reported.load(Ordering::Relaxed) {
        let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
        emit(&seen.event(json!({"status": response.status().as_u16(), "grpcStatus": grpc_status})));
    }
    response
}

/// One call of the method, borrowing what `answer` holds.
struct Call<'a> {
    state: &'a State,
    seen: &'a Observed,
    reported: &'a AtomicBool,
}

type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<tonic::Response<EchoReply>, Status>> + Send + 'a>>;

impl<'a> UnaryService<EchoRequest> for Call<'a> {
    type Response = EchoReply;
    type Future = CallFuture<'a>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let (state, seen, reported) = (self.state, self.seen, self.reported);
        Box::pin(async move {
            let headers = request.metadata().clone().into_headers();
            let message = request.into_inner();
            let (code, why, delay) = match Script::from_headers(&headers) {
                Err(why) => (Code::InvalidArgument as i32, why, Duration::ZERO),
                Ok(script) => {
                    let delay = match message.delay_ms {
                        0 => script.delay,
                        ms => Duration::from_millis(ms.into()),
                    };
                    if script.fails_first(&state.attempts) {
                        (Code::Unavailable as i32, "failing the first requests as asked".to_owned(), delay)
                    } else {
                        (message.fail_with_code, "failing as asked".to_owned(), delay)
                    }
                }
            };
            let body_bytes = message.encoded_len();
            emit(&seen.event(json!({"status": 200, "grpcStatus": code, "bodyBytes": body_bytes})));
            reported.store(true, Ordering::Relaxed);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let served_by = MetadataValue::try_from(state.name.as_str()).ok();
            if code != 0 {
                let mut status = Status::new(Code::from(code), format!("{}: {why}", state.name));
                if let Some(name) = served_by {
                    status.metadata_mut().insert(SERVED_BY, name);
                }
                return Err(status);
            }
            let metadata = headers_json(&headers)
                .into_iter()
                .map(|(name, value)| (name, value.as_str().unwrap_or_default().to_owned()))
                .collect();
            let reply = EchoReply {
                served_by: state.name.clone(),
                message: message.message,
                metadata,
                authority: seen.authority.clone(),
            };
            let mut response = tonic::Response::new(reply);
            if let Some(name) = served_by {
                response.metadata_mut().insert(SERVED_BY, name);
            }
            Ok(response)
        })
    }
}
