//! One HTTP route compiled for the pipeline: its action with every part checked (rewrites,
//! redirect, retry policy), its fault, CORS policy and header operations, and the clusters it
//! sends to resolved to their run-time state.

use std::{collections::BTreeMap, sync::Arc};

use ambit_common::api::v1::{HttpRoute, Mirror, WeightedCluster, http_route::Action as ProtoAction};
use bytes::Bytes;
use http::StatusCode;

use crate::{
    cors::{Cors, CorsError},
    fault::{FaultError, Injector},
    headers::{HeaderOpError, HeaderOps},
    redirect::{RedirectAction, RedirectError},
    retry::{Policy, RetryError},
    rewrite::{PathRewriter, RewriteError},
    upstream::ClusterState,
};

/// What is wrong with a route; the caller adds the table, port and route name.
#[derive(Debug, thiserror::Error)]
pub enum RouteActionError {
    #[error("no action (forward, redirect or directResponse)")]
    NoAction,
    #[error("forward: no cluster has a weight")]
    NoWeight,
    #[error(
        "{field}: cluster {cluster:?} is not in the configuration (the control plane sends every cluster a route names)"
    )]
    MissingCluster { field: String, cluster: String },
    #[error("{field}: {source}")]
    Headers { field: String, source: HeaderOpError },
    #[error("forward.clusters[{index}].authorityRewrite: {source}")]
    Authority { index: usize, source: RewriteError },
    #[error("forward.pathRewrite: {0}")]
    Rewrite(RewriteError),
    #[error("redirect: {0}")]
    Redirect(#[from] RedirectError),
    #[error("directResponse.status: {0} is not an HTTP status")]
    DirectStatus(u32),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error(transparent)]
    Cors(#[from] CorsError),
    #[error("forward.{0}")]
    Retry(#[from] RetryError),
}

pub struct Route {
    pub name: String,
    pub action: Action,
    pub fault: Option<Injector>,
    pub cors: Option<Cors>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

pub enum Action {
    Forward(Forward),
    Redirect(RedirectAction),
    Direct { status: StatusCode, body: Bytes },
}

pub struct Forward {
    /// As configured, for `pick_weighted`; `targets[i]` is `clusters[i]` compiled.
    pub clusters: Vec<WeightedCluster>,
    pub targets: Vec<Target>,
    pub path_rewrite: Option<PathRewriter>,
    pub timeout_ms: u64,
    /// Absent in the route: no retries.
    pub retry: Policy,
    pub mirrors: Vec<Mirror>,
    /// `mirror_clusters[i]` is where `mirrors[i]` goes.
    pub mirror_clusters: Vec<Arc<ClusterState>>,
}

pub struct Target {
    pub cluster: Arc<ClusterState>,
    pub authority: Option<String>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

impl Forward {
    /// The target a request goes to, by weight.
    pub fn pick(&self) -> Option<&Target> {
        let picked = crate::route::pick_weighted(&self.clusters, crate::rng::below)?;
        let index = self.clusters.iter().position(|c| std::ptr::eq(c, picked))?;
        self.targets.get(index)
    }
}

pub(super) fn compile(
    route: &HttpRoute,
    clusters: &BTreeMap<String, Arc<ClusterState>>,
) -> Result<Route, RouteActionError> {
    let headers = |field: &str, ops| {
        HeaderOps::compile(ops).map_err(|source| RouteActionError::Headers { field: field.to_owned(), source })
    };
    let action = match route.action.as_ref().ok_or(RouteActionError::NoAction)? {
        ProtoAction::Forward(forward) => {
            if forward.clusters.iter().all(|c| c.weight == 0) {
                return Err(RouteActionError::NoWeight);
            }
            let lookup = |field: String, name: &str| {
                clusters
                    .get(name)
                    .cloned()
                    .ok_or_else(|| RouteActionError::MissingCluster { field, cluster: name.to_owned() })
            };
            let targets = forward
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if !c.authority_rewrite.is_empty() {
                        c.authority_rewrite.parse::<http::uri::Authority>().map_err(|_| {
                            RouteActionError::Authority {
                                index: i,
                                source: RewriteError::Authority { authority: c.authority_rewrite.clone() },
                            }
                        })?;
                    }
                    Ok(Target {
                        cluster: lookup(format!("forward.clusters[{i}]"), &c.cluster)?,
                        authority: (!c.authority_rewrite.is_empty()).then(|| c.authority_rewrite.clone()),
                        request_headers: headers(&format!("forward.clusters[{i}].requestHeaders"), &c.request_headers)?,
                        response_headers: headers(
                            &format!("forward.clusters[{i}].responseHeaders"),
                            &c.response_headers,
                        )?,
                    })
                })
                .collect::<Result<Vec<_>, RouteActionError>>()?;
            let uri = route.r#match.as_ref().and_then(|m| m.uri.as_ref());
            let path_rewrite = forward
                .path_rewrite
                .as_ref()
                .map(|r| PathRewriter::compile(r, uri))
                .transpose()
                .map_err(RouteActionError::Rewrite)?;
            let mirror_clusters = forward
                .mirrors
                .iter()
                .enumerate()
                .map(|(i, m)| lookup(format!("forward.mirrors[{i}]"), &m.cluster))
                .collect::<Result<Vec<_>, _>>()?;
            Action::Forward(Forward {
                clusters: forward.clusters.clone(),
                targets,
                path_rewrite,
                timeout_ms: forward.timeout_ms,
                retry: Policy::new(&forward.retry.clone().unwrap_or_default())?,
                mirrors: forward.mirrors.clone(),
                mirror_clusters,
            })
        }
        ProtoAction::Redirect(redirect) => Action::Redirect(RedirectAction::compile(redirect)?),
        ProtoAction::DirectResponse(direct) => {
            let status = u16::try_from(direct.status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or(RouteActionError::DirectStatus(direct.status))?;
            Action::Direct { status, body: Bytes::from(direct.body.clone()) }
        }
    };
    Ok(Route {
        name: route.name.clone(),
        action,
        fault: route.fault.as_ref().map(Injector::new).transpose()?,
        cors: route.cors.as_ref().map(Cors::compile).transpose()?,
        request_headers: headers("requestHeaders", &route.request_headers)?,
        response_headers: headers("responseHeaders", &route.response_headers)?,
    })
}
