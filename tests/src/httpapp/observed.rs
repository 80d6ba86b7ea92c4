//! What the server saw of a request (method, path, authority, protocol, headers), in the form it
//! is echoed back and reported in `request` events.

use http::{HeaderMap, Version, header::HOST, request::Parts};
use serde_json::{Map, Value, json};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Observed {
    pub(super) method: String,
    /// Path and query.
    pub(super) path: String,
    /// `:authority`, or else the Host header (empty when neither was sent).
    pub(super) authority: String,
    pub(super) protocol: &'static str,
    pub(super) headers: Map<String, Value>,
}

impl Observed {
    pub(super) fn of(parts: &Parts) -> Self {
        let authority = match parts.uri.authority() {
            Some(a) => a.as_str().to_owned(),
            None => {
                parts.headers.get(HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()).unwrap_or_default()
            }
        };
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            authority,
            protocol: protocol_name(parts.version),
            headers: headers_json(&parts.headers),
        }
    }

    /// The `request` event: these fields plus `extra` (status, body size, gRPC status).
    pub(super) fn event(&self, extra: Value) -> Value {
        let mut event = json!({
            "event": "request",
            "method": self.method,
            "path": self.path,
            "authority": self.authority,
            "protocol": self.protocol,
            "headers": self.headers,
        });
        if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
            event.extend(extra);
        }
        event
    }
}

pub(super) fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

/// Header names (lower case, as `http` keeps them) to values; repeated headers joined by ",".
pub(super) fn headers_json(headers: &HeaderMap) -> Map<String, Value> {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<String> =
            headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
        map.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }
    map
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn http1_authority_comes_from_host_and_repeated_headers_are_joined() {
        let seen = Observed::of(&parts(
            Request::post("/a/b?x=1")
                .header("Host", "reviews:9080")
                .header("X-Tag", "one")
                .header("x-tag", "two")
                .body(())
                .unwrap(),
        ));
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/a/b?x=1");
        assert_eq!(seen.authority, "reviews:9080");
        assert_eq!(seen.protocol, "HTTP/1.1");
        assert_eq!(seen.headers["x-tag"], "one,two");
        assert_eq!(seen.headers["host"], "reviews:9080");
    }

    #[test]
    fn http2_authority_comes_from_the_uri() {
        let seen =
            Observed::of(&parts(Request::get("http://ratings.svc:8080/r").version(Version::HTTP_2).body(()).unwrap()));
        assert_eq!(seen.authority, "ratings.svc:8080");
        assert_eq!(seen.path, "/r");
        assert_eq!(seen.protocol, "HTTP/2");
    }

    #[test]
    fn the_event_carries_the_extra_fields() {
        let seen = Observed::of(&parts(Request::get("/").body(()).unwrap()));
        let event = seen.event(json!({"status": 503}));
        assert_eq!(event["event"], "request");
        assert_eq!(event["status"], 503);
        assert_eq!(event["authority"], "");
    }
}
