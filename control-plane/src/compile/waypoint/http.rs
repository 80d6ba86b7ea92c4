//! A VirtualService's `http` routes for one service port, translated as Istio translates them
//! for Envoy (`BuildHTTPRoutesForVirtualService`, `translateRoute`).

use ambit_common::{
    api::v1::{Forward, HttpRoute, Mirror, RegexRewrite, WeightedCluster, forward::PathRewrite, http_route::Action},
    config::model::{self, HttpRouteDestination, RouteAction, UriRewrite, VirtualService},
};

use super::{
    Ctx, actions, matches, ms, per_million,
    routes::{ClusterKey, ClusterRefs, MESH_GATEWAY, plain_cluster},
};

/// The routes for traffic to `port`, in order. A route with several matches becomes one route
/// per match; a match for another port or for gateways only is left out; nothing follows a
/// route that matches every request.
pub(super) fn routes(ctx: &Ctx<'_>, vs: &VirtualService, port: u16, refs: &mut ClusterRefs) -> Vec<HttpRoute> {
    let applies = |m: &&model::HttpMatch| {
        m.port.is_none_or(|p| p == port) && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == MESH_GATEWAY))
    };
    let mut builder = Builder { ctx, vs, port, refs };
    let mut out = Vec::new();
    for route in &vs.http {
        let matches: Vec<Option<&model::HttpMatch>> = if route.matches.is_empty() {
            vec![None]
        } else {
            route.matches.iter().filter(applies).map(Some).collect()
        };
        for m in matches {
            let compiled = builder.route(route, m);
            let catch_all = compiled.r#match.is_none();
            out.push(compiled);
            if catch_all {
                return out;
            }
        }
    }
    out
}

/// Istio's default route (`BuildDefaultHTTPOutboundRoute`): everything to the service's own
/// cluster, no timeout, the default retry policy.
pub(super) fn default_route(ctx: &Ctx<'_>, own: &ClusterKey) -> HttpRoute {
    let consistent_hash = ctx.policy(own).1.is_consistent_hash();
    HttpRoute {
        name: "default".into(),
        action: Some(Action::Forward(Forward {
            clusters: vec![plain_cluster(own, 100)],
            retry: Some(actions::default_retry(consistent_hash)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

struct Builder<'c, 'a> {
    ctx: &'c Ctx<'a>,
    vs: &'c VirtualService,
    port: u16,
    refs: &'c mut ClusterRefs,
}

impl Builder<'_, '_> {
    fn route(&mut self, route: &model::HttpRoute, m: Option<&model::HttpMatch>) -> HttpRoute {
        let name = match m.and_then(|m| m.name.as_deref()) {
            Some(match_name) => format!("{}.{match_name}", route.name.as_deref().unwrap_or_default()),
            None => route.name.clone().unwrap_or_default(),
        };
        let (mut request, mut response) = (vec![&route.headers.request], vec![&route.headers.response]);
        let action = match &route.action {
            RouteAction::Route(destinations) => {
                let (forward, single) = self.forward(route, destinations);
                if let Some(dest) = single {
                    // One destination: Istio appends its header operations to the route's.
                    request.push(&dest.headers.request);
                    response.push(&dest.headers.response);
                }
                Action::Forward(forward)
            }
            RouteAction::Redirect(r) => Action::Redirect(actions::redirect(r, self.port)),
            RouteAction::DirectResponse(d) => Action::DirectResponse(actions::direct_response(d)),
        };
        HttpRoute {
            name,
            r#match: m.and_then(|m| matches::http_match(self.ctx, m)),
            action: Some(action),
            fault: route.fault.as_ref().and_then(actions::fault),
            cors: route.cors.as_ref().map(actions::cors),
            request_headers: actions::header_list(&request),
            response_headers: actions::header_list(&response),
        }
    }

    /// The forward action, and the destination when there is exactly one (its header
    /// operations then belong to the route level).
    fn forward<'r>(
        &mut self,
        route: &model::HttpRoute,
        destinations: &'r [HttpRouteDestination],
    ) -> (Forward, Option<&'r HttpRouteDestination>) {
        // Istio decides on the destinations as written, before leaving out those of weight 0.
        let single = (destinations.len() == 1).then(|| &destinations[0]);
        let destinations = actions::weighted(destinations.iter().map(|d| (d, d.weight)).collect());
        let rewrite = route.rewrite.as_ref();
        let route_authority =
            rewrite.and_then(|r| r.authority.clone()).or_else(|| actions::authority(&route.headers.request));
        let mut consistent_hash = false;
        let clusters = destinations
            .iter()
            .map(|(dest, weight)| {
                let key = self.key(&dest.destination);
                consistent_hash = single.is_some() && self.ctx.policy(&key).1.is_consistent_hash();
                let own_authority = actions::authority(&dest.headers.request);
                let cluster = if single.is_some() {
                    // The route's authority wins over a lone destination's (Istio's rule).
                    let authority = route_authority.clone().or(own_authority);
                    WeightedCluster { authority_rewrite: authority.unwrap_or_default(), ..plain_cluster(&key, *weight) }
                } else {
                    WeightedCluster {
                        authority_rewrite: own_authority.or_else(|| route_authority.clone()).unwrap_or_default(),
                        request_headers: actions::header_list(&[&dest.headers.request]),
                        response_headers: actions::header_list(&[&dest.headers.response]),
                        ..plain_cluster(&key, *weight)
                    }
                };
                self.refs.insert(key);
                cluster
            })
            .collect();
        let forward = Forward {
            clusters,
            path_rewrite: rewrite.and_then(|r| r.uri.as_ref()).map(path_rewrite),
            timeout_ms: route.timeout.map_or(0, ms),
            retry: actions::retry_policy(route.retries.as_ref(), consistent_hash),
            mirrors: self.mirrors(&route.mirrors),
        };
        (forward, single)
    }

    /// Mirrors with a percentage of 0 are left out, as Istio does.
    fn mirrors(&mut self, mirrors: &[model::Mirror]) -> Vec<Mirror> {
        let mut out = Vec::new();
        for mirror in mirrors {
            let share = per_million(mirror.percentage);
            if share == 0 {
                continue;
            }
            let key = self.key(&mirror.destination);
            out.push(Mirror { cluster: key.name(), per_million: share });
            self.refs.insert(key);
        }
        out
    }

    fn key(&self, destination: &model::Destination) -> ClusterKey {
        self.ctx.cluster_key(destination, &self.vs.meta.namespace, self.port)
    }
}

fn path_rewrite(uri: &UriRewrite) -> PathRewrite {
    match uri {
        UriRewrite::Prefix(prefix) => PathRewrite::PrefixRewrite(prefix.clone()),
        UriRewrite::Regex { pattern, rewrite } => PathRewrite::RegexRewrite(RegexRewrite {
            pattern: pattern.as_str().to_string(),
            substitution: rewrite.clone(),
        }),
    }
}
