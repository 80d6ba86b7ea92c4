//! Local replies and flags against what Envoy sends: router (`sendNoHealthyUpstreamResponse`,
//! `onUpstreamReset`, `onUpstreamTimeoutAbort`), fault filter (`abortWithStatus`), RBAC filter,
//! HTTP/1 codec (`sendProtocolError`), `Http::Utility::sendLocalReply` for the framing and
//! `Grpc::Utility::httpToGrpcStatus` for gRPC requests.

use std::collections::BTreeSet;

use http::{HeaderValue, StatusCode, header};

use super::*;

const UF_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";

/// One example of every variant (and every sub-case that changes the answer), with what Envoy
/// answers: status, flags, body (`None`: the upstream's response is passed on), and the
/// `grpc-status` a gRPC client gets.
fn table() -> Vec<(Failure, u16, &'static str, Option<String>, u32)> {
    use Failure::*;
    let reset = |reason: &str, retried: bool| {
        let retried = if retried { "retried and the latest " } else { "" };
        format!("upstream connect error or disconnect/reset before headers. {retried}reset reason: {reason}")
    };
    let text = |s: &str| Some(s.to_owned());
    vec![
        (NoRoute, 404, "NR", text(""), 12),
        (NoHealthyUpstream, 503, "UH", text("no healthy upstream"), 14),
        (UpstreamOverflow { retried: false }, 503, "UO", Some(reset("overflow", false)), 14),
        (UpstreamOverflow { retried: true }, 503, "UO", Some(reset("overflow", true)), 14),
        (ConnectFailure { cause: super::ConnectFailure::Remote, retried: false }, 503, "UF", text(UF_BODY), 14),
        (
            ConnectFailure { cause: super::ConnectFailure::Timeout, retried: true },
            503,
            "UF",
            Some(reset("connection timeout", true)),
            14,
        ),
        (
            ConnectFailure { cause: super::ConnectFailure::Local, retried: false },
            503,
            "UF",
            Some(reset("local connection failure", false)),
            14,
        ),
        (
            UpstreamReset { reason: ResetReason::Remote, retried: false },
            503,
            "UR",
            Some(reset("remote reset", false)),
            14,
        ),
        (
            UpstreamReset { reason: ResetReason::RefusedStream, retried: true },
            503,
            "UR",
            Some(reset("remote refused stream reset", true)),
            14,
        ),
        (
            UpstreamReset { reason: ResetReason::ConnectionTermination, retried: false },
            503,
            "UC",
            Some(reset("connection termination", false)),
            14,
        ),
        (
            UpstreamReset { reason: ResetReason::ProtocolError, retried: false },
            502,
            "UPE",
            Some(reset("protocol error", false)),
            14,
        ),
        (RouteTimeout, 504, "UT", text("upstream request timeout"), 14),
        (PerTryTimeout, 504, "UT", text("upstream request timeout"), 14),
        (RetryLimitExceeded { last_status: StatusCode::SERVICE_UNAVAILABLE }, 503, "URX", None, 14),
        (FaultAbort(Abort::Http(StatusCode::SERVICE_UNAVAILABLE)), 503, "FI", text("fault filter abort"), 14),
        (FaultAbort(Abort::Http(StatusCode::IM_A_TEAPOT)), 418, "FI", text("fault filter abort"), 2),
        (FaultAbort(Abort::Grpc(GrpcStatus::NotFound)), 200, "FI", text("fault filter abort"), 5),
        (AccessDenied, 403, "-", text("RBAC: access denied"), 7),
        (BadRequest, 400, "DPE", text("Bad Request"), 13),
    ]
}

/// Adding a variant to `Failure` breaks this match, so it cannot be left out of `table`.
fn variant(failure: &Failure) -> &'static str {
    match failure {
        Failure::NoRoute => "NoRoute",
        Failure::NoHealthyUpstream => "NoHealthyUpstream",
        Failure::UpstreamOverflow { .. } => "UpstreamOverflow",
        Failure::ConnectFailure { .. } => "ConnectFailure",
        Failure::UpstreamReset { .. } => "UpstreamReset",
        Failure::RouteTimeout => "RouteTimeout",
        Failure::PerTryTimeout => "PerTryTimeout",
        Failure::RetryLimitExceeded { .. } => "RetryLimitExceeded",
        Failure::FaultAbort(_) => "FaultAbort",
        Failure::AccessDenied => "AccessDenied",
        Failure::BadRequest => "BadRequest",
    }
}
const VARIANTS: usize = 11;

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply.head.headers.get(name).map(|v| v.to_str().expect("ascii header"))
}

#[test]
fn every_failure_is_mapped_to_envoys_status_flags_and_body() {
    let table = table();
    let covered: BTreeSet<_> = table.iter().map(|(f, ..)| variant(f)).collect();
    assert_eq!(covered.len(), VARIANTS, "every variant has a row: {covered:?}");
    for (failure, status, flags, body, _) in &table {
        assert_eq!(failure.status().as_u16(), *status, "{failure:?}");
        assert_eq!(failure.flags().to_string(), *flags, "{failure:?}");
        assert_eq!(&failure.body(), body, "{failure:?}");
        let reply = failure.reply(RequestKind::Http);
        assert_eq!(reply.is_none(), body.is_none(), "{failure:?}: a body means a local reply");
        if let Some(reply) = reply {
            assert_eq!(reply.head.status.as_u16(), *status, "{failure:?}");
            assert_eq!(Some(&reply.body), body.as_ref(), "{failure:?}");
        }
    }
}

#[test]
fn every_failure_answers_a_grpc_request_with_a_trailers_only_response() {
    for (failure, _, _, body, grpc_status) in table() {
        let Some(reply) = failure.reply(RequestKind::Grpc) else {
            assert!(body.is_none());
            continue;
        };
        assert_eq!(reply.head.status, StatusCode::OK, "{failure:?}");
        assert_eq!(header(&reply, "content-type"), Some("application/grpc"), "{failure:?}");
        assert_eq!(header(&reply, "grpc-status"), Some(grpc_status.to_string().as_str()), "{failure:?}");
        let message = body.filter(|b| !b.is_empty());
        assert_eq!(header(&reply, "grpc-message"), message.as_deref(), "{failure:?}");
        assert!(reply.body.is_empty(), "{failure:?}: trailers only");
        assert_eq!(header(&reply, "content-length"), None, "{failure:?}");
    }
}

#[test]
fn an_http_local_reply_is_text_plain_with_its_length_and_an_empty_one_has_neither() {
    let failure = Failure::ConnectFailure { cause: ConnectFailure::Remote, retried: false };
    let reply = failure.reply(RequestKind::Http).expect("local reply");
    assert_eq!(reply.head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&reply, "content-type"), Some("text/plain"));
    assert_eq!(header(&reply, "content-length"), Some(UF_BODY.len().to_string().as_str()));
    assert_eq!(reply.body, UF_BODY);

    let no_route = Failure::NoRoute.reply(RequestKind::Http).expect("local reply");
    assert_eq!(no_route.head.status, StatusCode::NOT_FOUND);
    assert!(no_route.head.headers.is_empty() && no_route.body.is_empty());
}

#[test]
fn a_head_request_gets_the_headers_without_the_body() {
    let reply = Failure::NoHealthyUpstream.reply(RequestKind::Head).expect("local reply");
    assert_eq!(reply.head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&reply, "content-length"), Some("19"));
    assert_eq!(header(&reply, "content-type"), Some("text/plain"));
    assert!(reply.body.is_empty());
}

#[test]
fn a_grpc_fault_abort_on_a_plain_http_request_is_a_200_with_the_text() {
    let reply = Failure::FaultAbort(Abort::Grpc(GrpcStatus::Unavailable)).reply(RequestKind::Http).expect("reply");
    assert_eq!(reply.head.status, StatusCode::OK);
    assert_eq!(reply.body, "fault filter abort");
    assert_eq!(header(&reply, "grpc-status"), None);
}

#[test]
fn http_statuses_map_to_grpc_statuses_as_envoy_maps_them() {
    let cases = [
        (400, GrpcStatus::Internal),
        (401, GrpcStatus::Unauthenticated),
        (403, GrpcStatus::PermissionDenied),
        (404, GrpcStatus::Unimplemented),
        (429, GrpcStatus::Unavailable),
        (502, GrpcStatus::Unavailable),
        (503, GrpcStatus::Unavailable),
        (504, GrpcStatus::Unavailable),
        (200, GrpcStatus::Unknown),
        (409, GrpcStatus::Unknown),
        (500, GrpcStatus::Unknown),
    ];
    for (http, grpc) in cases {
        let status = StatusCode::from_u16(http).expect("valid status");
        assert_eq!(GrpcStatus::from_http(status), grpc, "{http}");
    }
}

#[test]
fn grpc_status_codes_round_trip_and_are_read_from_headers() {
    for (code, status) in GrpcStatus::ALL.iter().enumerate() {
        assert_eq!(u32::try_from(code).ok(), Some(status.code()));
        assert_eq!(GrpcStatus::from_code(status.code()), Some(*status));
    }
    assert_eq!(GrpcStatus::from_code(17), None);
    let mut headers = http::HeaderMap::new();
    assert_eq!(GrpcStatus::from_headers(&headers), None);
    headers.insert("grpc-status", HeaderValue::from_static("14"));
    assert_eq!(GrpcStatus::from_headers(&headers), Some(GrpcStatus::Unavailable));
    for invalid in ["99", "-1", "unavailable", ""] {
        headers.insert("grpc-status", HeaderValue::from_static(invalid));
        assert_eq!(GrpcStatus::from_headers(&headers), None, "{invalid:?}");
    }
}

#[test]
fn grpc_message_is_percent_encoded() {
    assert_eq!(grpc::percent_encode("RBAC: access denied"), "RBAC: access denied");
    assert_eq!(grpc::percent_encode("50% ~ caf\u{e9}\n"), "50%25 %7E caf%C3%A9%0A");
}

#[test]
fn grpc_is_recognised_by_content_type_as_envoy_does() {
    let kind = |method: &str, content_type: Option<&'static str>| {
        let mut builder = http::Request::builder().method(method).uri("/pkg.Svc/Method");
        if let Some(t) = content_type {
            builder = builder.header(header::CONTENT_TYPE, t);
        }
        RequestKind::of(&builder.body(()).expect("request").into_parts().0)
    };
    assert_eq!(kind("POST", Some("application/grpc")), RequestKind::Grpc);
    assert_eq!(kind("POST", Some("application/grpc+proto")), RequestKind::Grpc);
    assert_eq!(kind("POST", Some("application/grpc-web")), RequestKind::Http);
    assert_eq!(kind("POST", Some("application/json")), RequestKind::Http);
    assert_eq!(kind("GET", None), RequestKind::Http);
    assert_eq!(kind("HEAD", None), RequestKind::Head);
}

#[test]
fn flags_have_envoys_names_and_print_in_envoys_order() {
    let names: Vec<_> = ResponseFlag::ALL.iter().map(|f| (f.short(), f.long())).collect();
    assert_eq!(
        names,
        [
            ("UH", "NoHealthyUpstream"),
            ("UT", "UpstreamRequestTimeout"),
            ("UR", "UpstreamRemoteReset"),
            ("UF", "UpstreamConnectionFailure"),
            ("UC", "UpstreamConnectionTermination"),
            ("UO", "UpstreamOverflow"),
            ("NR", "NoRouteFound"),
            ("DI", "DelayInjected"),
            ("FI", "FaultInjected"),
            ("DC", "DownstreamConnectionTermination"),
            ("URX", "UpstreamRetryLimitExceeded"),
            ("DPE", "DownstreamProtocolError"),
            ("UPE", "UpstreamProtocolError"),
        ]
    );
    let print = |flags: &[ResponseFlag]| flags.iter().copied().collect::<ResponseFlags>().to_string();
    assert_eq!(print(&[]), "-");
    assert_eq!(print(&[ResponseFlag::UpstreamRetryLimitExceeded, ResponseFlag::UpstreamConnectionFailure]), "UF,URX");
    assert_eq!(print(&[ResponseFlag::FaultInjected, ResponseFlag::DelayInjected]), "DI,FI");
    assert_eq!(print(&[ResponseFlag::UpstreamRetryLimitExceeded, ResponseFlag::UpstreamRequestTimeout]), "UT,URX");
    let all: ResponseFlags = ResponseFlag::ALL.into_iter().collect();
    assert_eq!(all.iter().count(), ResponseFlag::ALL.len(), "every flag has its own bit");
}

#[test]
fn reset_texts_are_envoys_word_for_word() {
    let body = |failure: Failure| failure.body().expect("local reply");
    assert_eq!(
        body(Failure::UpstreamOverflow { retried: false }),
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
    assert_eq!(
        body(Failure::ConnectFailure { cause: ConnectFailure::Remote, retried: true }),
        "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"
    );
    assert_eq!(
        body(Failure::UpstreamReset { reason: ResetReason::ConnectionTermination, retried: false }),
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    );
}
