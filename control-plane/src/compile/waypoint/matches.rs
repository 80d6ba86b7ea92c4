//! Match conditions: Istio's HTTP and L4 matches in the form a waypoint checks, with
//! `sourceLabels` resolved into the workloads they select.

use ambit_common::{
    api::{
        serde_bytes::from_ip,
        v1::{
            HeaderMatch, HttpMatch, IpNet, SourceWorkload, SourceWorkloads, StringMatcher, TcpMatch,
            string_matcher::Kind,
        },
    },
    config::model::{self, L4Match, Labels, StringMatch, ValueMatch},
};

use super::Ctx;

/// `None` when the match sets no condition (it matches every request).
pub(super) fn http_match(ctx: &Ctx<'_>, m: &model::HttpMatch) -> Option<HttpMatch> {
    let headers = |map: &std::collections::BTreeMap<String, ValueMatch>, lower: bool| -> Vec<HeaderMatch> {
        map.iter()
            .map(|(name, value)| HeaderMatch {
                name: if lower { name.to_ascii_lowercase() } else { name.clone() },
                value: match value {
                    ValueMatch::Present => None,
                    ValueMatch::Is(s) => Some(string_matcher(s)),
                },
            })
            .collect()
    };
    let compiled = HttpMatch {
        uri: m.uri.as_ref().map(string_matcher),
        ignore_uri_case: m.ignore_uri_case && m.uri.is_some(),
        scheme: m.scheme.as_ref().map(string_matcher),
        method: m.method.as_ref().map(string_matcher),
        authority: m.authority.as_ref().map(string_matcher),
        headers: headers(&m.headers, true),
        without_headers: headers(&m.without_headers, true),
        query_params: headers(&m.query_params, false),
        source_workloads: source_workloads(ctx, &m.source_labels, m.source_namespace.as_deref()),
        source_namespace: m.source_namespace.clone().unwrap_or_default(),
    };
    (compiled != HttpMatch::default()).then_some(compiled)
}

pub(super) fn tcp_match(ctx: &Ctx<'_>, m: &L4Match) -> TcpMatch {
    TcpMatch {
        destination_subnets: m
            .destination_subnets
            .iter()
            .map(|b| IpNet { address: from_ip(b.addr), prefix_len: u32::from(b.prefix_len) })
            .collect(),
        source_workloads: source_workloads(ctx, &m.source_labels, m.source_namespace.as_deref()),
        source_namespace: m.source_namespace.clone().unwrap_or_default(),
    }
}

pub(super) fn string_matcher(m: &StringMatch) -> StringMatcher {
    let kind = match m {
        StringMatch::Exact(s) => Kind::Exact(s.clone()),
        StringMatch::Prefix(s) => Kind::Prefix(s.clone()),
        StringMatch::Regex(p) => Kind::Regex(p.as_str().to_string()),
    };
    StringMatcher { kind: Some(kind) }
}

/// The live pods carrying every label in `labels` (in `namespace` when the match also names
/// one), with the addresses and identity a waypoint sees for them. `None` when `labels` is
/// empty: no condition. Istio's own waypoints ignore `sourceLabels`; a sidecar applies it to
/// the client's own labels, which is what this reproduces, per request.
fn source_workloads(ctx: &Ctx<'_>, labels: &Labels, namespace: Option<&str>) -> Option<SourceWorkloads> {
    if labels.is_empty() {
        return None;
    }
    let workloads = ctx
        .index
        .live_pods_with(namespace, labels)
        .into_iter()
        .map(|p| {
            let ips = if p.ips.is_empty() { p.ip.into_iter().collect() } else { p.ips.clone() };
            SourceWorkload {
                uid: p.uid.clone().unwrap_or_default(),
                addresses: ips.into_iter().map(from_ip).collect(),
                identity: ctx.index.identity(&p.meta.namespace, &p.service_account),
            }
        })
        .collect();
    Some(SourceWorkloads { workloads })
}
