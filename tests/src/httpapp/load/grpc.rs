//! The gRPC transport of `load`: `ambit.test.Echo/Call` through a tonic channel (h2c), shared
//! by every worker. `--header`s become metadata; `--authority` is the channel's origin.

use std::error::Error as _;

use http::{Uri, uri::PathAndQuery};
use tonic::{
    metadata::{AsciiMetadataKey, AsciiMetadataValue},
    transport::{Channel, Endpoint},
};
use tonic_prost::ProstCodec;

use super::outcome::{Failure, Outcome};
use crate::httpapp::{
    args::{HeaderTemplate, LoadArgs},
    grpc::{CALL_PATH, EchoReply, EchoRequest, server::SERVED_BY},
};

#[derive(Clone)]
pub(super) struct GrpcClient {
    grpc: tonic::client::Grpc<Channel>,
    headers: Vec<(AsciiMetadataKey, HeaderTemplate)>,
    /// The request message: N bytes when `--body-bytes N`, else `request <i>`.
    body_bytes: usize,
    fail_with_code: i32,
    delay_ms: u32,
}

impl GrpcClient {
    /// Must run inside the runtime: the lazy channel spawns its worker task.
    pub(super) fn new(args: &LoadArgs) -> Result<Self, String> {
        let url = format!("http://{}", args.target.connect);
        let endpoint =
            Endpoint::from_shared(url.clone()).map_err(|e| format!("--url: {url} is not an endpoint: {e}"))?;
        let origin: Uri = format!("http://{}", args.authority)
            .parse()
            .map_err(|e| format!("--authority {}: not usable as an origin: {e}", args.authority))?;
        let channel = endpoint.origin(origin).tcp_nodelay(true).connect_lazy();
        let headers = args
            .headers
            .iter()
            .map(|h| {
                let key = AsciiMetadataKey::from_bytes(h.name.as_str().as_bytes())
                    .map_err(|e| format!("--header {}: not an ASCII gRPC metadata key: {e}", h.name))?;
                Ok((key, h.clone()))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            grpc: tonic::client::Grpc::new(channel),
            headers,
            body_bytes: args.body_bytes,
            fail_with_code: args.grpc_fail_with,
            delay_ms: args.grpc_delay_ms,
        })
    }

    pub(super) async fn send(&mut self, i: u64) -> Outcome {
        let message = if self.body_bytes > 0 { "x".repeat(self.body_bytes) } else { format!("request {i}") };
        let mut request =
            tonic::Request::new(EchoRequest { message, fail_with_code: self.fail_with_code, delay_ms: self.delay_ms });
        for (key, template) in &self.headers {
            match AsciiMetadataValue::try_from(template.text_for(i)) {
                Ok(value) => request.metadata_mut().append(key.clone(), value),
                Err(e) => return Outcome::failed(Failure::of(&format!("--header {key}"), &e)),
            };
        }
        if let Err(e) = self.grpc.ready().await {
            return Outcome::failed(Failure::of("connecting", &e));
        }
        let path = PathAndQuery::from_static(CALL_PATH);
        match self.grpc.unary(request, path, ProstCodec::<EchoRequest, EchoReply>::default()).await {
            Ok(response) => {
                let reply = response.into_inner();
                Outcome { grpc_status: Some(0), served_by: Some(reply.served_by), ..Outcome::default() }
            }
            // tonic gives a status a source only when it stands for a transport error; a status
            // the server (or a proxy) sent has none.
            Err(status) => match status.source() {
                Some(source) => {
                    Outcome::failed(Failure::of(&format!("calling {CALL_PATH}: {}", status.message()), source))
                }
                None => Outcome {
                    grpc_status: Some(status.code() as i32),
                    served_by: status.metadata().get(SERVED_BY).and_then(|v| v.to_str().ok()).map(str::to_owned),
                    ..Outcome::default()
                },
            },
        }
    }
}
