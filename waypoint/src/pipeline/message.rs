//! Requests and responses as they cross the waypoint: the upstream request for one try (the
//! HTTP version of the upstream connection, hop-by-hop headers dropped but for a WebSocket
//! upgrade's), the response passed back (or the 101 that turns the exchange into a tunnel), and
//! the waypoint's own replies.

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version, header, request::Parts};
use hyper::{body::Incoming, upgrade::OnUpgrade};

use crate::{
    body::{self, Body},
    outcome::{Failure, RequestKind},
    upgrade,
    upstream::HttpVersion,
};

/// Connection-specific headers (RFC 9110 §7.6.1): never forwarded, and refused by HTTP/2.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&listed) {
        headers.remove(name);
    }
    // `te` may only say "trailers" (which gRPC needs).
    if headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}

/// The request's authority: the URI's, else the Host header.
pub fn authority(parts: &Parts) -> String {
    match parts.uri.authority() {
        Some(authority) => authority.as_str().to_owned(),
        None => parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned(),
    }
}

/// The request for one try over a connection speaking `version`; `upgrade`: a WebSocket upgrade
/// (HTTP/1.1 only), whose `Connection` and `Upgrade` headers are kept.
pub fn upstream_request(parts: &Parts, version: HttpVersion, body: Body, upgrade: bool) -> Request<Body> {
    let authority = authority(parts);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    if upgrade && version == HttpVersion::Http1 {
        upgrade::keep_upgrade_headers(&mut headers, parts.headers.get(header::UPGRADE).cloned());
    }
    let (uri, version) = match version {
        HttpVersion::Http1 => {
            if let Ok(host) = HeaderValue::from_str(&authority) {
                headers.insert(header::HOST, host);
            }
            (path.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/")), Version::HTTP_11)
        }
        HttpVersion::Http2 => {
            headers.remove(header::HOST);
            let uri = Uri::builder().scheme("http").authority(authority.as_str()).path_and_query(path).build();
            (uri.unwrap_or_else(|_| Uri::from_static("/")), Version::HTTP_2)
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    request
}

/// The upstream's response for the client; `guards` live until its body is done.
pub fn downstream_response(response: Response<Incoming>, guards: Vec<Box<dyn std::any::Any + Send>>) -> Response<Body> {
    let (mut head, incoming) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.version = Version::default();
    Response::from_parts(head, body::guarded(body::boxed(incoming), guards))
}

/// The upstream's `101 Switching Protocols` for the client, the two connections joined once
/// both sides have switched (`downstream`: the client connection's upgrade); `guards` live until
/// the tunnel ends, which it does after `idle` without a byte either way.
pub fn switched_response(
    mut response: Response<Incoming>,
    downstream: OnUpgrade,
    guards: Vec<Box<dyn std::any::Any + Send>>,
    idle: Option<std::time::Duration>,
) -> Response<Body> {
    let upstream = hyper::upgrade::on(&mut response);
    let (mut head, _) = response.into_parts();
    let protocol = head.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut head.headers);
    upgrade::keep_upgrade_headers(&mut head.headers, protocol);
    head.version = Version::default();
    upgrade::relay(downstream, upstream, guards, idle);
    Response::from_parts(head, body::empty())
}

/// The waypoint's answer for `failure` to a request of `kind`, as Envoy gives it.
pub fn local_reply(failure: &Failure, kind: RequestKind) -> Response<Body> {
    match failure.reply(kind) {
        Some(reply) => Response::from_parts(reply.head, body::full(reply.body)),
        // Only a retry-limit failure passes the upstream's response on; the pipeline never gets
        // here without one, but an empty reply with the status is the safe answer.
        None => status_reply(failure.status(), HeaderMap::new(), bytes::Bytes::new()),
    }
}

/// A response with `status`, `headers` and `body`.
pub fn status_reply(status: StatusCode, headers: HeaderMap, content: bytes::Bytes) -> Response<Body> {
    let mut response = Response::new(body::full(content));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn http1_tries_use_origin_form_and_host_http2_tries_the_authority() {
        let p = parts(
            Request::get("http://reviews:9080/a?b=1")
                .header("connection", "x-drop, keep-alive")
                .header("x-drop", "1")
                .header("te", "trailers")
                .header("x-keep", "1")
                .body(())
                .unwrap(),
        );
        let h1 = upstream_request(&p, HttpVersion::Http1, body::empty(), false);
        assert_eq!((h1.uri().to_string(), h1.version()), ("/a?b=1".to_owned(), Version::HTTP_11));
        assert_eq!(h1.headers()["host"], "reviews:9080");
        assert!(h1.headers().get("connection").is_none() && h1.headers().get("x-drop").is_none());
        assert_eq!(h1.headers()["te"], "trailers");
        assert_eq!(h1.headers()["x-keep"], "1");

        let p = parts(Request::get("/a").header("host", "reviews:9080").body(()).unwrap());
        let h2 = upstream_request(&p, HttpVersion::Http2, body::empty(), false);
        assert_eq!(h2.uri().to_string(), "http://reviews:9080/a");
        assert!(h2.headers().get("host").is_none());
    }

    #[test]
    fn a_websocket_upgrade_keeps_its_headers_over_http1_only() {
        let p = parts(
            Request::get("/chat")
                .header("host", "chat:80")
                .header("connection", "Upgrade, x-drop")
                .header("upgrade", "websocket")
                .header("x-drop", "1")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .body(())
                .unwrap(),
        );
        let h1 = upstream_request(&p, HttpVersion::Http1, body::empty(), true);
        assert_eq!(
            (&h1.headers()["connection"], &h1.headers()["upgrade"]),
            (&"upgrade".parse().unwrap(), &"websocket".parse().unwrap())
        );
        assert!(h1.headers().get("x-drop").is_none(), "other headers Connection lists still go");
        assert_eq!(h1.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        let h2 = upstream_request(&p, HttpVersion::Http2, body::empty(), true);
        assert!(h2.headers().get("connection").is_none() && h2.headers().get("upgrade").is_none());
        let plain = upstream_request(&p, HttpVersion::Http1, body::empty(), false);
        assert!(plain.headers().get("upgrade").is_none());
    }

    #[test]
    fn local_replies_are_envoys() {
        let reply = local_reply(&Failure::UpstreamOverflow { retried: false }, RequestKind::Http);
        assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
        let grpc = local_reply(&Failure::NoRoute, RequestKind::Grpc);
        assert_eq!((grpc.status(), &grpc.headers()["grpc-status"]), (StatusCode::OK, &HeaderValue::from(12)));
    }
}
