//! Object metadata: names, the default namespace, labels.

use super::labels;
use crate::{
    config::{
        error::{ConfigError, ObjectRef, Path},
        kind::Kind,
        model::ObjectMeta,
        raw::{LooseMeta, StrictMeta},
    },
    names::{check_dns_label, check_dns_subdomain},
};

/// The namespace an object without `metadata.namespace` lands in, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What every conversion starts from: the object's identity and its validated metadata.
pub(crate) struct ObjectInfo {
    pub(crate) object: ObjectRef,
    pub(crate) meta: ObjectMeta,
    pub(crate) uid: Option<String>,
}

pub(crate) fn istio_meta(kind: Kind, raw: StrictMeta) -> Result<ObjectInfo, ConfigError> {
    k8s_meta(kind, raw.into())
}

pub(crate) fn k8s_meta(kind: Kind, raw: LooseMeta) -> Result<ObjectInfo, ConfigError> {
    let Some(name) = raw.name.filter(|n| !n.is_empty()) else {
        return Err(ConfigError::new(None, "metadata.name", format!("every {kind} needs a name")));
    };
    let namespace = if kind.is_namespaced() {
        raw.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    } else {
        String::new()
    };
    let object = ObjectRef::new(kind, namespace.clone(), name.clone());
    let fail = |field: &str, message: String| ConfigError::new(Some(object.clone()), field, message);
    let name_check = if kind == Kind::Namespace { check_dns_label(&name) } else { check_dns_subdomain(&name) };
    name_check.map_err(|e| fail("metadata.name", format!("name {name:?} is invalid: it {e}")))?;
    if !namespace.is_empty() {
        check_dns_label(&namespace)
            .map_err(|e| fail("metadata.namespace", format!("namespace {namespace:?} is invalid: it {e}")))?;
    }
    let labels = labels(&raw.labels, &Path::root("metadata.labels")).map_err(|e| e.for_object(&object))?;
    let meta = ObjectMeta { name, namespace, labels, annotations: raw.annotations };
    Ok(ObjectInfo { object, meta, uid: raw.uid })
}
