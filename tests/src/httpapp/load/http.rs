//! The HTTP transports of `load`: a keep-alive HTTP/1.1 connection per worker, or one h2c
//! connection (prior knowledge) that every worker multiplexes. Both reconnect when their
//! connection is gone; neither retries a request the server may have seen.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version, header::HOST};
use http_body_util::{BodyExt, Full};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::{net::TcpStream, sync::Mutex};

use super::outcome::{Failure, Outcome};
use crate::httpapp::args::{HeaderTemplate, LoadArgs};

type RequestBody = Full<Bytes>;

/// What every worker of an HTTP run shares: how to build request `i`, where to connect, and how
/// many connections were opened.
pub(super) struct HttpShared {
    method: http::Method,
    /// Origin form (`/path?query`) with a Host header for HTTP/1.1, absolute for HTTP/2 (whose
    /// `:authority` hyper takes from the URI).
    origin_uri: Uri,
    absolute_uri: Uri,
    host: HeaderValue,
    headers: Vec<HeaderTemplate>,
    body: Bytes,
    connect: String,
    connections: AtomicU64,
}

impl HttpShared {
    pub(super) fn new(args: &LoadArgs) -> Result<Self, String> {
        let bad = |e: http::Error| format!("cannot build a request URI from --url and --authority: {e}");
        let origin_uri = Uri::builder().path_and_query(args.target.path.clone()).build().map_err(bad)?;
        let absolute_uri = Uri::builder()
            .scheme("http")
            .authority(args.authority.clone())
            .path_and_query(args.target.path.clone())
            .build()
            .map_err(bad)?;
        let host = HeaderValue::from_str(args.authority.as_str())
            .map_err(|e| format!("--authority {}: not a valid Host header: {e}", args.authority))?;
        Ok(Self {
            method: args.method.clone(),
            origin_uri,
            absolute_uri,
            host,
            headers: args.headers.clone(),
            body: Bytes::from(vec![b'x'; args.body_bytes]),
            connect: args.target.connect.clone(),
            connections: AtomicU64::new(0),
        })
    }

    pub(super) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn request(&self, i: u64, version: Version) -> Request<RequestBody> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.version_mut() = version;
        if version == Version::HTTP_2 {
            *request.uri_mut() = self.absolute_uri.clone();
        } else {
            *request.uri_mut() = self.origin_uri.clone();
            request.headers_mut().insert(HOST, self.host.clone());
        }
        let headers = request.headers_mut();
        for header in &self.headers {
            // A `--header host: …` replaces the default Host rather than doubling it.
            if header.name == HOST {
                headers.insert(HOST, header.value_for(i));
            } else {
                headers.append(header.name.clone(), header.value_for(i));
            }
        }
        request
    }

    async fn connect(&self) -> Result<TokioIo<TcpStream>, Failure> {
        let stream = TcpStream::connect(&self.connect)
            .await
            .map_err(|e| Failure::of(&format!("connecting to {}", self.connect), &e))?;
        let _ = stream.set_nodelay(true);
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(TokioIo::new(stream))
    }
}

/// One worker's HTTP/1.1 connection, kept alive between its requests.
pub(super) struct Http1 {
    shared: Arc<HttpShared>,
    sender: Option<http1::SendRequest<RequestBody>>,
}

impl Http1 {
    pub(super) fn new(shared: Arc<HttpShared>) -> Self {
        Self { shared, sender: None }
    }

    pub(super) async fn send(&mut self, i: u64) -> Outcome {
        match self.exchange(i).await {
            Ok(response) => read(response).await,
            Err(failure) => Outcome::failed(failure),
        }
    }

    async fn exchange(&mut self, i: u64) -> Result<Response<Incoming>, Failure> {
        let request = self.shared.request(i, Version::HTTP_11);
        let mut idle = self.sender.take();
        if let Some(sender) = &mut idle
            && sender.ready().await.is_err()
        {
            idle = None;
        }
        let reused = idle.is_some();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut e) => match e.take_message() {
                // The kept-alive connection closed before the request went out (the server's
                // idle timeout): nobody saw it, so it is safe to send on a fresh connection.
                Some(request) if reused => {
                    sender = self.connect().await?;
                    sender.send_request(request).await.map_err(|e| Failure::of("sending the request", &e))?
                }
                _ => return Err(Failure::of("sending the request", e.error())),
            },
        };
        self.sender = Some(sender);
        Ok(response)
    }

    async fn connect(&self) -> Result<http1::SendRequest<RequestBody>, Failure> {
        let io = self.shared.connect().await?;
        let (mut sender, connection) = http1::handshake(io).await.map_err(|e| Failure::of("starting HTTP/1.1", &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender.ready().await.map_err(|e| Failure::of("starting HTTP/1.1", &e))?;
        Ok(sender)
    }
}

/// The one HTTP/2 connection all workers share (opened by the first request, again after it ends).
pub(super) struct H2c {
    shared: Arc<HttpShared>,
    sender: Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl H2c {
    pub(super) fn new(shared: Arc<HttpShared>) -> Self {
        Self { shared, sender: Mutex::new(None) }
    }

    pub(super) fn connections(&self) -> u64 {
        self.shared.connections()
    }

    pub(super) async fn send(&self, i: u64) -> Outcome {
        let request = self.shared.request(i, Version::HTTP_2);
        let exchange = async {
            let mut sender = self.sender().await?;
            sender.ready().await.map_err(|e| Failure::of("waiting for an HTTP/2 stream", &e))?;
            sender.send_request(request).await.map_err(|e| Failure::of("sending the request", &e))
        };
        match exchange.await {
            Ok(response) => read(response).await,
            Err(failure) => Outcome::failed(failure),
        }
    }

    async fn sender(&self) -> Result<http2::SendRequest<RequestBody>, Failure> {
        // Held while connecting, so concurrent workers wait for one connection, not open several.
        let mut slot = self.sender.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let io = self.shared.connect().await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| Failure::of("starting HTTP/2 (prior knowledge)", &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}

/// Reads the whole answer; its `servedBy` when the body is the server's JSON echo.
async fn read(response: Response<Incoming>) -> Outcome {
    let status = response.status().as_u16();
    match response.into_body().collect().await {
        Ok(body) => Outcome { status: Some(status), served_by: served_by(&body.to_bytes()), ..Outcome::default() },
        Err(e) => Outcome::failed(Failure::of(&format!("reading the body of a {status} answer"), &e)),
    }
}

fn served_by(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    Some(body.get("servedBy")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpapp::args::parse_load;

    fn shared(args: &[&str]) -> HttpShared {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        HttpShared::new(&parse_load(&args).unwrap()).unwrap()
    }

    #[test]
    fn http1_requests_are_origin_form_with_a_host_header() {
        let shared = shared(&[
            "--url",
            "http://10.0.0.5:9080/reviews/1?x=y",
            "--count",
            "1",
            "--authority",
            "reviews.bookinfo:9080",
            "--header",
            "x-httpapp-key: k-{i}",
            "--header",
            "x-tag: a",
            "--header",
            "x-tag: b",
        ]);
        let request = shared.request(7, Version::HTTP_11);
        assert_eq!(request.uri(), "/reviews/1?x=y");
        assert_eq!(request.headers()[HOST], "reviews.bookinfo:9080");
        assert_eq!(request.headers()["x-httpapp-key"], "k-7");
        assert_eq!(request.headers().get_all("x-tag").iter().count(), 2);
        assert_eq!(shared.connect, "10.0.0.5:9080");
    }

    #[test]
    fn http2_requests_carry_the_authority_in_the_uri() {
        let shared = shared(&["--url", "http://10.0.0.5/p", "--count", "1", "--method", "POST", "--body-bytes", "3"]);
        let request = shared.request(0, Version::HTTP_2);
        assert_eq!(request.uri(), "http://10.0.0.5/p");
        assert_eq!(request.method(), "POST");
        assert!(request.headers().get(HOST).is_none());
        assert_eq!(shared.body.len(), 3);
        assert_eq!(shared.connect, "10.0.0.5:80");
    }

    #[test]
    fn a_host_header_replaces_the_default() {
        let shared = shared(&["--url", "http://10.0.0.5/", "--count", "1", "--header", "Host: other"]);
        let request = shared.request(0, Version::HTTP_11);
        assert_eq!(request.headers().get_all(HOST).iter().collect::<Vec<_>>(), ["other"]);
    }

    #[test]
    fn served_by_comes_from_the_json_echo_only() {
        assert_eq!(served_by(br#"{"servedBy":"v2","path":"/"}"#), Some("v2".to_owned()));
        assert_eq!(served_by(b"no healthy upstream"), None);
        assert_eq!(served_by(br#"{"servedBy":3}"#), None);
    }
}
