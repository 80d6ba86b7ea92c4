//! VirtualService → model.

use std::net::IpAddr;

use super::{export_to, gateway_names, istio_meta, route, unsupported, wildcard_host};
use crate::config::{
    error::{ConfigError, FieldResult, Path},
    hosts,
    kind::Kind,
    model::{ObjectMeta, VirtualService},
    raw::{IstioObject, virtual_service::VirtualServiceSpec},
};

impl TryFrom<IstioObject<VirtualServiceSpec>> for VirtualService {
    type Error = ConfigError;
    fn try_from(raw: IstioObject<VirtualServiceSpec>) -> Result<Self, ConfigError> {
        let info = istio_meta(Kind::VirtualService, raw.metadata)?;
        virtual_service(info.meta, &raw.spec).map_err(|e| e.for_object(&info.object))
    }
}

fn virtual_service(meta: ObjectMeta, spec: &VirtualServiceSpec) -> FieldResult<VirtualService> {
    let at = Path::root("spec");
    if !spec.tls.is_empty() {
        return Err(at.key("tls").err(unsupported(
            "SNI-based TLS routing (spec.tls)",
            "route TLS traffic by port with a tcp route instead",
        )));
    }
    let gateways = gateway_names(&spec.gateways, &at.key("gateways"))?;
    let mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
    check_hosts(&spec.hosts, mesh, &at.key("hosts"))?;
    if spec.http.is_empty() && spec.tcp.is_empty() {
        return Err(at.err("a VirtualService needs http or tcp routes"));
    }
    let http = spec
        .http
        .iter()
        .enumerate()
        .map(|(i, r)| route::http_route(r, &at.key("http").index(i)))
        .collect::<FieldResult<_>>()?;
    let tcp = spec
        .tcp
        .iter()
        .enumerate()
        .map(|(i, r)| route::tcp_route(r, &at.key("tcp").index(i)))
        .collect::<FieldResult<_>>()?;
    let export_to = export_to(&spec.export_to, &meta.namespace, false, &at.key("exportTo"))?;
    Ok(VirtualService { meta, hosts: spec.hosts.clone(), gateways, http, tcp, export_to })
}

fn check_hosts(list: &[String], mesh: bool, at: &Path) -> FieldResult<()> {
    if list.is_empty() {
        return Err(at.err(
            "a VirtualService must list at least one host (one without hosts is a delegate, which Ambit does not support)",
        ));
    }
    for (i, host) in list.iter().enumerate() {
        if host.parse::<IpAddr>().is_ok() {
            continue;
        }
        wildcard_host(host).map_err(|e| at.index(i).err(e))?;
        if mesh && host == "*" {
            return Err(at.index(i).err("wildcard host \"*\" is not allowed for VirtualServices bound to the mesh"));
        }
    }
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if hosts::matches(a, b) || hosts::matches(b, a) {
                return Err(at.err(format!("duplicate hosts {a:?} and {b:?}; list each host once")));
            }
        }
    }
    Ok(())
}
