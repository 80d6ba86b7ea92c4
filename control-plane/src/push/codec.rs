//! The Subscribe method served with a codec that sends pre-encoded `Update` bytes (see
//! [`super::view`]). On the wire it is the generated `ambit.v1.Discovery/Subscribe`: clients
//! use the generated client. Mirrors what tonic's generated server does for one method.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use ambit_common::api::v1::SubscribeRequest;
use bytes::BufMut;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Body, BoxFuture, StdError, http},
    server::{Grpc, StreamingService},
};

use super::{Subscriptions, view::EncodedUpdate};

pub const SUBSCRIBE_PATH: &str = "/ambit.v1.Discovery/Subscribe";

#[derive(Clone, Copy, Default)]
struct PushCodec;

impl Codec for PushCodec {
    type Encode = EncodedUpdate;
    type Decode = SubscribeRequest;
    type Encoder = PushCodec;
    type Decoder = PushCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PushCodec {
    type Item = EncodedUpdate;
    type Error = Status;

    fn encode(&mut self, item: EncodedUpdate, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        for chunk in item.chunks {
            dst.put(chunk);
        }
        Ok(())
    }
}

impl Decoder for PushCodec {
    type Item = SubscribeRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<SubscribeRequest>, Status> {
        SubscribeRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed SubscribeRequest: {e}")))
    }
}

/// The gRPC service: routes `Subscribe` to [`Subscriptions`], answers anything else
/// `UNIMPLEMENTED`.
#[derive(Clone)]
pub struct DiscoveryService {
    subscriptions: Arc<Subscriptions>,
}

impl DiscoveryService {
    pub fn new(subscriptions: Arc<Subscriptions>) -> Self {
        Self { subscriptions }
    }
}

struct SubscribeMethod(Arc<Subscriptions>);

impl StreamingService<SubscribeRequest> for SubscribeMethod {
    type Response = EncodedUpdate;
    type ResponseStream = ReceiverStream<Result<EncodedUpdate, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<SubscribeRequest>>) -> Self::Future {
        let subscriptions = self.0.clone();
        Box::pin(async move { subscriptions.subscribe(request).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for DiscoveryService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SUBSCRIBE_PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = SubscribeMethod(self.subscriptions.clone());
        Box::pin(async move {
            // Requests are small (Hello, Acks); updates may be tens of MB.
            let mut grpc = Grpc::new(PushCodec).apply_max_message_size_config(Some(1024 * 1024), Some(usize::MAX));
            Ok(grpc.streaming(method, request).await)
        })
    }
}
