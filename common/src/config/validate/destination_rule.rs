//! DestinationRule → model.

use std::collections::BTreeSet;

use super::{dns_label, export_to, istio_meta, labels, selector, traffic_policy::traffic_policy, wildcard_host};
use crate::config::{
    error::{ConfigError, FieldResult, Path},
    kind::Kind,
    model::{DestinationRule, ExportTo, ObjectMeta, Subset},
    raw::{IstioObject, destination_rule::DestinationRuleSpec},
};

impl TryFrom<IstioObject<DestinationRuleSpec>> for DestinationRule {
    type Error = ConfigError;
    fn try_from(raw: IstioObject<DestinationRuleSpec>) -> Result<Self, ConfigError> {
        let info = istio_meta(Kind::DestinationRule, raw.metadata)?;
        destination_rule(info.meta, &raw.spec).map_err(|e| e.for_object(&info.object))
    }
}

fn destination_rule(meta: ObjectMeta, spec: &DestinationRuleSpec) -> FieldResult<DestinationRule> {
    let at = Path::root("spec");
    wildcard_host(&spec.host).map_err(|e| at.key("host").err(e))?;
    let policy = spec.traffic_policy.as_ref().map(|t| traffic_policy(t, &at.key("trafficPolicy"))).transpose()?;
    let mut names = BTreeSet::new();
    let mut subsets = Vec::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let at = at.key("subsets").index(i);
        dns_label(&s.name, &at.key("name"), "subset name")?;
        if !names.insert(s.name.clone()) {
            return Err(at.key("name").err(format!("duplicate subset name {:?}; subset names must be unique", s.name)));
        }
        subsets.push(Subset {
            name: s.name.clone(),
            labels: labels(&s.labels, &at.key("labels"))?,
            traffic_policy: s
                .traffic_policy
                .as_ref()
                .map(|t| traffic_policy(t, &at.key("trafficPolicy")))
                .transpose()?,
        });
    }
    let workload_selector = match &spec.workload_selector {
        Some(ws) => selector(&ws.match_labels, &at.key("workloadSelector").key("matchLabels"))?,
        None => None,
    };
    let export_to = export_to(&spec.export_to, &meta.namespace, false, &at.key("exportTo"))?;
    if workload_selector.is_some()
        && export_to != ExportTo::Namespaces(vec![meta.namespace.clone()])
        && !spec.export_to.is_empty()
    {
        return Err(at
            .key("exportTo")
            .err("a DestinationRule with a workloadSelector can only be exported to its own namespace (\".\")"));
    }
    Ok(DestinationRule { meta, host: spec.host.clone(), traffic_policy: policy, subsets, export_to, workload_selector })
}
