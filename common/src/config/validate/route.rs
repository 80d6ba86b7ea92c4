//! HTTP and TCP routes of a VirtualService: matches, destinations, weights, headers.

use std::collections::BTreeMap;

use super::{
    any_duration, any_name, at_most_one, dns_label, gateway_names, header_name, ip_blocks, labels, opt_port,
    opt_string_match, port, route_extras, unsupported, value_matches, wildcard_host,
};
use crate::config::{
    error::{FieldResult, Path},
    model::{
        Destination, HeaderManipulation, HeaderOperations, HttpMatch, HttpRoute, HttpRouteDestination, L4Match,
        RouteAction, RouteDestination, TcpRoute,
    },
    raw::{common as rc, virtual_service as rv},
};

pub(super) fn http_route(raw: &rv::HttpRoute, at: &Path) -> FieldResult<HttpRoute> {
    if raw.delegate.is_some() {
        return Err(at.key("delegate").err(unsupported(
            "delegate (VirtualService chaining)",
            "merge the delegate VirtualService's routes into this one",
        )));
    }
    let action = action(raw, at)?;
    if matches!(action, RouteAction::Redirect(_)) {
        at_most_one(at, &[("redirect", true), ("fault", raw.fault.is_some())], "a redirect cannot inject faults")?;
        at_most_one(at, &[("redirect", true), ("rewrite", raw.rewrite.is_some())], "a redirect cannot rewrite")?;
    }
    let matches = raw
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| http_match(m, &at.key("match").index(i)))
        .collect::<FieldResult<_>>()?;
    Ok(HttpRoute {
        name: raw.name.clone(),
        matches,
        action,
        rewrite: raw.rewrite.as_ref().map(|r| route_extras::rewrite(r, &at.key("rewrite"))).transpose()?,
        timeout: raw.timeout.as_ref().map(|t| any_duration(t, &at.key("timeout"))).transpose()?,
        retries: raw.retries.as_ref().map(|r| route_extras::retry(r, &at.key("retries"))).transpose()?,
        fault: raw.fault.as_ref().map(|f| route_extras::fault(f, &at.key("fault"))).transpose()?,
        mirrors: route_extras::mirrors(raw, at)?,
        cors: raw.cors_policy.as_ref().map(|c| route_extras::cors(c, &at.key("corsPolicy"))).transpose()?,
        headers: headers(raw.headers.as_ref(), &at.key("headers"))?,
    })
}

fn action(raw: &rv::HttpRoute, at: &Path) -> FieldResult<RouteAction> {
    let fields = [
        ("route", !raw.route.is_empty()),
        ("redirect", raw.redirect.is_some()),
        ("directResponse", raw.direct_response.is_some()),
    ];
    at_most_one(at, &fields, "a route either forwards, redirects or responds directly")?;
    if let Some(r) = &raw.redirect {
        return route_extras::redirect(r, &at.key("redirect")).map(RouteAction::Redirect);
    }
    if let Some(d) = &raw.direct_response {
        return route_extras::direct_response(d, &at.key("directResponse")).map(RouteAction::DirectResponse);
    }
    if raw.route.is_empty() {
        return Err(at.err("an HTTP route needs one of route, redirect or directResponse"));
    }
    http_destinations(&raw.route, &at.key("route")).map(RouteAction::Route)
}

fn http_match(raw: &rv::HttpMatchRequest, at: &Path) -> FieldResult<HttpMatch> {
    if let Some(ns) = &raw.source_namespace {
        dns_label(ns, &at.key("sourceNamespace"), "sourceNamespace")?;
    }
    Ok(HttpMatch {
        name: raw.name.clone(),
        uri: opt_string_match(raw.uri.as_ref(), &at.key("uri"))?,
        scheme: opt_string_match(raw.scheme.as_ref(), &at.key("scheme"))?,
        method: opt_string_match(raw.method.as_ref(), &at.key("method"))?,
        authority: opt_string_match(raw.authority.as_ref(), &at.key("authority"))?,
        headers: value_matches(&raw.headers, &at.key("headers"), header_name)?,
        without_headers: value_matches(&raw.without_headers, &at.key("withoutHeaders"), header_name)?,
        query_params: value_matches(&raw.query_params, &at.key("queryParams"), any_name)?,
        ignore_uri_case: raw.ignore_uri_case,
        port: opt_port(raw.port, &at.key("port"))?,
        source_labels: labels(&raw.source_labels, &at.key("sourceLabels"))?,
        source_namespace: raw.source_namespace.clone(),
        gateways: gateway_names(&raw.gateways, &at.key("gateways"))?,
        stat_prefix: raw.stat_prefix.clone(),
    })
}

pub(super) fn destination(raw: &rc::Destination, at: &Path) -> FieldResult<Destination> {
    if raw.host == "*" {
        return Err(at.key("host").err("destination host \"*\" is not allowed; name a service"));
    }
    wildcard_host(&raw.host).map_err(|e| at.key("host").err(e))?;
    if let Some(subset) = &raw.subset {
        dns_label(subset, &at.key("subset"), "subset name")?;
    }
    let port = match &raw.port {
        Some(p) => Some(port(p.number.unwrap_or(0), &at.key("port").key("number"))?),
        None => None,
    };
    Ok(Destination { host: raw.host.clone(), subset: raw.subset.clone(), port })
}

/// Weights: each 0–100; a lone destination gets 100 whatever it says (Istio: "if there is
/// only one destination in a rule, the weight value is assumed to be 100"); with several,
/// an omitted weight is 0 and the weights must sum to 100.
fn weights(raw: &[Option<i64>], at: &Path) -> FieldResult<Vec<u32>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, w) in raw.iter().enumerate() {
        let w = w.unwrap_or(0);
        let w = u32::try_from(w)
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| at.index(i).key("weight").err(format!("weight {w} is not in range 0..100")))?;
        out.push(w);
    }
    if out.len() == 1 {
        return Ok(vec![100]);
    }
    let sum: u32 = out.iter().sum();
    if sum != 100 {
        let omitted = if raw.iter().any(Option::is_none) { " (an omitted weight counts as 0)" } else { "" };
        return Err(at.err(format!("weights sum to {sum}{omitted}; they must sum to 100")));
    }
    Ok(out)
}

fn http_destinations(raw: &[rv::HttpRouteDestination], at: &Path) -> FieldResult<Vec<HttpRouteDestination>> {
    let weights = weights(&raw.iter().map(|d| d.weight).collect::<Vec<_>>(), at)?;
    raw.iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (d, weight))| {
            let at = at.index(i);
            Ok(HttpRouteDestination {
                destination: destination(&d.destination, &at.key("destination"))?,
                weight,
                headers: headers(d.headers.as_ref(), &at.key("headers"))?,
            })
        })
        .collect()
}

fn route_destinations(raw: &[rv::RouteDestination], at: &Path) -> FieldResult<Vec<RouteDestination>> {
    let weights = weights(&raw.iter().map(|d| d.weight).collect::<Vec<_>>(), at)?;
    raw.iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (d, weight))| {
            Ok(RouteDestination { destination: destination(&d.destination, &at.index(i).key("destination"))?, weight })
        })
        .collect()
}

/// Header manipulation: Istio refuses pseudo-headers (`:path`) and, except through
/// `:authority`/`host` on requests, the Host header.
pub(super) fn headers(raw: Option<&rc::Headers>, at: &Path) -> FieldResult<HeaderManipulation> {
    let Some(raw) = raw else { return Ok(HeaderManipulation::default()) };
    Ok(HeaderManipulation {
        request: header_ops(raw.request.as_ref(), &at.key("request"), true)?,
        response: header_ops(raw.response.as_ref(), &at.key("response"), false)?,
    })
}

fn header_ops(raw: Option<&rc::HeaderOperations>, at: &Path, request: bool) -> FieldResult<HeaderOperations> {
    let Some(raw) = raw else { return Ok(HeaderOperations::default()) };
    let check_set = |map: &BTreeMap<String, String>, at: &Path| -> FieldResult<()> {
        for (name, value) in map {
            let authority = request && (name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host"));
            check_header_op(name, authority, &at.entry(name))?;
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(at.entry(name).err("header value must not contain control characters"));
            }
        }
        Ok(())
    };
    check_set(&raw.set, &at.key("set"))?;
    check_set(&raw.add, &at.key("add"))?;
    for (i, name) in raw.remove.iter().enumerate() {
        check_header_op(name, false, &at.key("remove").index(i))?;
    }
    Ok(HeaderOperations { set: raw.set.clone(), add: raw.add.clone(), remove: raw.remove.clone() })
}

fn check_header_op(name: &str, authority_allowed: bool, at: &Path) -> FieldResult<()> {
    if name.is_empty() {
        return Err(at.err("header name must not be empty"));
    }
    if authority_allowed {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(at.err("the Host header cannot be changed here; use rewrite.authority"));
    }
    if name.starts_with(':') {
        return Err(at.err(format!("invalid header {name:?}: pseudo-headers (\":\" prefix) cannot be changed")));
    }
    Ok(())
}

pub(super) fn tcp_route(raw: &rv::TcpRoute, at: &Path) -> FieldResult<TcpRoute> {
    let matches = raw
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = at.key("match").index(i);
            if let Some(ns) = &m.source_namespace {
                dns_label(ns, &at.key("sourceNamespace"), "sourceNamespace")?;
            }
            Ok(L4Match {
                destination_subnets: ip_blocks(&m.destination_subnets, &at.key("destinationSubnets"))?,
                port: opt_port(m.port, &at.key("port"))?,
                source_labels: labels(&m.source_labels, &at.key("sourceLabels"))?,
                gateways: gateway_names(&m.gateways, &at.key("gateways"))?,
                source_namespace: m.source_namespace.clone(),
            })
        })
        .collect::<FieldResult<_>>()?;
    if raw.route.is_empty() {
        return Err(at.key("route").err("a TCP route needs at least one destination"));
    }
    Ok(TcpRoute { matches, route: route_destinations(&raw.route, &at.key("route"))? })
}
