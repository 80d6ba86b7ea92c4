//! One API object → a validated model object or a [`ConfigError`], straight from its JSON value
//! (never through YAML text), with the same raw types and `TryFrom` validation as the local
//! source, so both sources accept and reject exactly the same objects.
//!
//! `ambit_common::config` exposes the raw types and the model's `TryFrom`s but not its decode
//! step (which reads YAML text), so this module repeats its small dispatch: a
//! `pub fn decode_value(kind, &serde_json::Value) -> Result<Object, ConfigError>` in common
//! would replace [`decode`], [`typed`] and [`with_hint`].

use ambit_common::config::{
    ConfigError, DEFAULT_NAMESPACE, Kind, LocatedObject, ObjectRef, Origin,
    model::{self, Object},
    raw::{self, IstioObject},
};
use kube::{api::DynamicObject, discovery::ApiResource};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What one object converted to; cached until the object's `resourceVersion` changes.
#[expect(
    clippy::large_enum_variant,
    reason = "held behind an Arc in the cache; boxing the valid variant would add a second indirection"
)]
#[derive(Debug)]
pub(super) enum Converted {
    Valid(LocatedObject),
    Invalid(ConfigError),
}

/// `namespace`, `name` as the API server gives them: the key of an object in its kind's cache.
pub(super) type Key = (String, String);

pub(super) fn key(object: &DynamicObject) -> Key {
    (object.metadata.namespace.clone().unwrap_or_default(), object.metadata.name.clone().unwrap_or_default())
}

/// Converts `object`, of the kind `api` describes, into the config model.
pub(super) fn convert(kind: Kind, api: &ApiResource, object: DynamicObject) -> Converted {
    let object_ref = object_ref(kind, &object);
    let origin = Origin::new(format!("kubernetes:{object_ref}"), 1);
    let value = into_json(api, object);
    match decode(kind, &value) {
        Ok(object) => Converted::Valid(LocatedObject { object, origin }),
        Err(mut error) => {
            // The store keeps the last good version of the object an error names.
            error.object.get_or_insert(object_ref);
            Converted::Invalid(error.with_origin(origin))
        }
    }
}

/// The model's name for the object: what its `Object::object_ref` will be once valid.
fn object_ref(kind: Kind, object: &DynamicObject) -> ObjectRef {
    let (namespace, name) = key(object);
    let namespace = match (kind.is_namespaced(), namespace.is_empty()) {
        (false, _) => String::new(),
        (true, true) => DEFAULT_NAMESPACE.to_string(),
        (true, false) => namespace,
    };
    ObjectRef::new(kind, namespace, name)
}

/// The object as the API server wrote it. List items of built-in kinds come without
/// `apiVersion` and `kind`; they are filled in from the resource that was listed.
fn into_json(api: &ApiResource, object: DynamicObject) -> Value {
    let DynamicObject { types, mut metadata, data } = object;
    // The largest part of most objects' metadata, and never read.
    metadata.managed_fields = None;
    let mut map = match data {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let types = types.filter(|t| !t.api_version.is_empty() && !t.kind.is_empty());
    let (api_version, kind) =
        types.map_or_else(|| (api.api_version.clone(), api.kind.clone()), |t| (t.api_version, t.kind));
    map.insert("apiVersion".into(), Value::String(api_version));
    map.insert("kind".into(), Value::String(kind));
    // ObjectMeta has only string keys, so this cannot fail; a null would read as "no name".
    map.insert("metadata".into(), serde_json::to_value(&metadata).unwrap_or_default());
    Value::Object(map)
}

fn decode(kind: Kind, value: &Value) -> Result<Object, ConfigError> {
    use raw::{destination_rule as dr, k8s, security as sec, service_entry as se, virtual_service as vs};
    Ok(match kind {
        Kind::Namespace => Object::Namespace(typed::<k8s::Namespace, _>(value)?),
        Kind::Pod => Object::Pod(typed::<k8s::Pod, _>(value)?),
        Kind::Service => Object::Service(typed::<k8s::Service, _>(value)?),
        Kind::EndpointSlice => Object::EndpointSlice(typed::<k8s::EndpointSlice, _>(value)?),
        Kind::ServiceAccount => Object::ServiceAccount(typed::<k8s::ServiceAccount, _>(value)?),
        Kind::Gateway => Object::Gateway(typed::<k8s::Gateway, _>(value)?),
        Kind::VirtualService => {
            Object::VirtualService(typed::<IstioObject<vs::VirtualServiceSpec>, model::VirtualService>(value)?)
        }
        Kind::DestinationRule => {
            Object::DestinationRule(typed::<IstioObject<dr::DestinationRuleSpec>, model::DestinationRule>(value)?)
        }
        Kind::ServiceEntry => {
            Object::ServiceEntry(typed::<IstioObject<se::ServiceEntrySpec>, model::ServiceEntry>(value)?)
        }
        Kind::AuthorizationPolicy => Object::AuthorizationPolicy(typed::<
            IstioObject<sec::AuthorizationPolicySpec>,
            model::AuthorizationPolicy,
        >(value)?),
        Kind::PeerAuthentication => Object::PeerAuthentication(typed::<
            IstioObject<sec::PeerAuthenticationSpec>,
            model::PeerAuthentication,
        >(value)?),
    })
}

/// JSON → raw type (strict or lenient, as the raw type says) → validated model type.
fn typed<R, M>(value: &Value) -> Result<M, ConfigError>
where
    R: DeserializeOwned,
    M: TryFrom<R, Error = ConfigError>,
{
    let raw: R = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ConfigError::new(None, field_path(path, &message), with_hint(message))
    })?;
    M::try_from(raw)
}

/// The path as the local source (serde_yaml) writes it: the root is empty, not `.`, and an
/// unknown field is reported at the mapping that holds it (the message names the field).
fn field_path(path: String, message: &str) -> String {
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
    let path = match unknown {
        Some(field) if path == field => String::new(),
        Some(field) => path.strip_suffix(&format!(".{field}")).map_or(path.clone(), str::to_string),
        None => path,
    };
    if path == "." { String::new() } else { path }
}

/// For ``unknown field `weigth`, expected one of `destination`, `weight`…``, suggests the closest
/// expected name when it is a likely typo (as the local source's messages do).
fn with_hint(message: String) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message };
    let Some((unknown, expected)) = rest.split_once('`') else { return message };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(unknown, name), name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min();
    match best {
        Some((_, name)) => format!("{message}; did you mean `{name}`?"),
        None => message,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
