//! Route selection: which route a request (or a TCP connection) takes through a service port,
//! and which weighted cluster it goes to.
//!
//! A [`PortRouter`] is built once per configuration update from a `PortRoutes`: every matcher is
//! compiled then (regexes included), and an invalid one is an error naming the service, port,
//! route and field, so a bad table is refused whole rather than half-applied. Selection is then
//! allocation-free apart from joining repeated headers:
//!
//! - HTTP: the routes in order, the first whose `HttpMatch` holds wins (an absent match holds for
//!   every request); none: no route (Envoy answers 404 with flag NR);
//! - TCP: the routes in order, the first with a `TcpMatch` that holds (an empty list holds for
//!   every connection); none: the connection is closed (NR);
//! - a route's clusters are picked by weight ([`pick_weighted`]).

mod matcher;
mod source;
#[cfg(test)]
mod tests;
mod weighted;

use std::net::IpAddr;

use ambit_common::api::v1::{HttpMatch, HttpRoute, PortRoutes, TcpMatch, TcpRoute};

pub use self::{matcher::RequestView, source::Source, weighted::pick_weighted};
pub(crate) use self::{matcher::StringCondition, source::Subnet};
use self::{
    matcher::{HeaderCondition, UriCondition},
    source::SourceCondition,
};

/// Why a route table cannot be used; names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route table {hostname} port {port}, route {route:?}: {field}: {reason}")]
pub struct RouteError {
    pub hostname: String,
    pub port: u32,
    /// The route's name, or `#<index>` when it has none.
    pub route: String,
    /// The field, as in `match.headers[end-user]`.
    pub field: String,
    pub reason: String,
}

/// The routes of one service port, compiled.
pub struct PortRouter {
    http: Vec<CompiledHttpRoute>,
    tcp: Vec<CompiledTcpRoute>,
}

struct CompiledHttpRoute {
    route: HttpRoute,
    matcher: Option<CompiledHttpMatch>,
}

struct CompiledHttpMatch {
    uri: Option<UriCondition>,
    scheme: Option<StringCondition>,
    method: Option<StringCondition>,
    authority: Option<StringCondition>,
    headers: Vec<HeaderCondition>,
    without_headers: Vec<HeaderCondition>,
    query_params: Vec<HeaderCondition>,
    source: SourceCondition,
}

struct CompiledTcpRoute {
    route: TcpRoute,
    /// Empty: every connection.
    matches: Vec<CompiledTcpMatch>,
}

struct CompiledTcpMatch {
    destination_subnets: Vec<Subnet>,
    source: SourceCondition,
}

impl PortRouter {
    /// Compiles `routes`, a port of the service `hostname`.
    pub fn new(hostname: &str, routes: &PortRoutes) -> Result<Self, RouteError> {
        let error = |route: String, field: String, reason: String| RouteError {
            hostname: hostname.to_owned(),
            port: routes.port,
            route,
            field,
            reason,
        };
        let http = routes
            .http
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let name = if route.name.is_empty() { format!("#{i}") } else { route.name.clone() };
                let matcher = route
                    .r#match
                    .as_ref()
                    .map(compile_http_match)
                    .transpose()
                    .map_err(|(field, reason)| error(name, field, reason))?;
                Ok(CompiledHttpRoute { route: route.clone(), matcher })
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        let tcp = routes
            .tcp
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let matches = route
                    .matches
                    .iter()
                    .enumerate()
                    .map(|(m, tcp_match)| {
                        compile_tcp_match(tcp_match).map_err(|(field, reason)| {
                            error(format!("tcp #{i}"), format!("matches[{m}].{field}"), reason)
                        })
                    })
                    .collect::<Result<Vec<_>, RouteError>>()?;
                Ok(CompiledTcpRoute { route: route.clone(), matches })
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        Ok(Self { http, tcp })
    }

    /// The first HTTP route whose match holds for `request`, with its position.
    pub fn select_http(&self, request: &RequestView<'_>) -> Option<(usize, &HttpRoute)> {
        self.http
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.as_ref().is_none_or(|m| m.holds(request)))
            .map(|(i, r)| (i, &r.route))
    }

    /// The first TCP route one of whose matches holds for a connection from `source` to
    /// `destination` (the original destination address).
    pub fn select_tcp(&self, source: &Source, destination: IpAddr) -> Option<(usize, &TcpRoute)> {
        self.tcp
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches.is_empty() || r.matches.iter().any(|m| m.holds(source, destination)))
            .map(|(i, r)| (i, &r.route))
    }
}

impl CompiledHttpMatch {
    fn holds(&self, request: &RequestView<'_>) -> bool {
        self.uri.as_ref().is_none_or(|c| c.holds(request.path()))
            && self.scheme.as_ref().is_none_or(|c| c.holds(request.scheme()))
            && self.method.as_ref().is_none_or(|c| c.holds(request.method()))
            && self.authority.as_ref().is_none_or(|c| c.holds(request.authority()))
            && self.headers.iter().all(|c| c.holds(request.header(c.name()).as_deref()))
            && !self.without_headers.iter().any(|c| c.holds_without(request.header(c.name()).as_deref()))
            && self.query_params.iter().all(|c| c.holds(request.query_param(c.name()).as_deref()))
            && self.source.holds(request.source())
    }
}

impl CompiledTcpMatch {
    fn holds(&self, source: &Source, destination: IpAddr) -> bool {
        (self.destination_subnets.is_empty() || self.destination_subnets.iter().any(|s| s.contains(destination)))
            && self.source.holds(source)
    }
}

/// `(field, reason)` of the first invalid part.
type FieldError = (String, String);

fn compile_http_match(m: &HttpMatch) -> Result<CompiledHttpMatch, FieldError> {
    fn field(name: &'static str) -> impl Fn(String) -> FieldError {
        move |reason| (format!("match.{name}"), reason)
    }
    let string = |name: &'static str, matcher: &Option<ambit_common::api::v1::StringMatcher>| {
        matcher.as_ref().map(StringCondition::compile).transpose().map_err(field(name))
    };
    let conditions = |name: &str, list: &[ambit_common::api::v1::HeaderMatch]| {
        list.iter()
            .map(|h| HeaderCondition::compile(h).map_err(|reason| (format!("match.{name}[{}]", h.name), reason)))
            .collect::<Result<Vec<_>, FieldError>>()
    };
    Ok(CompiledHttpMatch {
        uri: m.uri.as_ref().map(|u| UriCondition::compile(u, m.ignore_uri_case)).transpose().map_err(field("uri"))?,
        scheme: string("scheme", &m.scheme)?,
        method: string("method", &m.method)?,
        authority: string("authority", &m.authority)?,
        headers: conditions("headers", &m.headers)?,
        without_headers: conditions("withoutHeaders", &m.without_headers)?,
        query_params: conditions("queryParams", &m.query_params)?,
        source: SourceCondition::compile(m.source_workloads.as_ref(), &m.source_namespace)
            .map_err(field("sourceWorkloads"))?,
    })
}

fn compile_tcp_match(m: &TcpMatch) -> Result<CompiledTcpMatch, FieldError> {
    let destination_subnets = m
        .destination_subnets
        .iter()
        .enumerate()
        .map(|(i, net)| Subnet::compile(net).map_err(|reason| (format!("destinationSubnets[{i}]"), reason)))
        .collect::<Result<Vec<_>, FieldError>>()?;
    let source = SourceCondition::compile(m.source_workloads.as_ref(), &m.source_namespace)
        .map_err(|reason| ("sourceWorkloads".to_owned(), reason))?;
    Ok(CompiledTcpMatch { destination_subnets, source })
}
