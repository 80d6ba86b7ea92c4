//! The node proxy's standalone namespace source: a YAML file of Kubernetes `Namespace` objects
//! (several documents, or one `kind: List`). Only names and labels matter for enrollment.

use std::collections::BTreeMap;

use serde::{Deserialize, de::IgnoredAny};

use crate::{enrollment::Labels, names::check_dns_label};

/// Namespaces by name, with their labels. Built only through [`NamespaceSet::from_yaml`] or
/// [`NamespaceSet::from_iter`], so every name in it is valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceSet {
    namespaces: BTreeMap<String, Labels>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NamespaceFileError {
    #[error("document {doc}: {message}")]
    Yaml { doc: usize, message: String },
    #[error("document {doc} ({object}): field {field}: {message}")]
    Invalid { doc: usize, object: String, field: &'static str, message: String },
    #[error("Namespace/{name} is defined twice (documents {first} and {second}); keep one")]
    Duplicate { name: String, first: usize, second: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawObject {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    items: Option<Vec<RawObject>>,
    // Accepted so `kubectl get namespace -o yaml` output loads; not used.
    #[serde(default, rename = "spec")]
    _spec: Option<IgnoredAny>,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetadata {
    name: Option<String>,
    #[serde(default)]
    labels: Labels,
    // Accepted and ignored: present in objects exported from a cluster.
    #[serde(default, rename = "annotations")]
    _annotations: Option<IgnoredAny>,
    #[serde(default, rename = "uid")]
    _uid: Option<IgnoredAny>,
    #[serde(default, rename = "resourceVersion")]
    _resource_version: Option<IgnoredAny>,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: Option<IgnoredAny>,
}

impl NamespaceSet {
    pub fn from_yaml(text: &str) -> Result<Self, NamespaceFileError> {
        let mut set = Self::default();
        let mut defined_in = BTreeMap::new();
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let doc = index + 1;
            let value = serde_yaml::Value::deserialize(document)
                .map_err(|e| NamespaceFileError::Yaml { doc, message: e.to_string() })?;
            if value.is_null() {
                continue; // empty document, e.g. a trailing `---`
            }
            let raw: RawObject =
                serde_yaml::from_value(value).map_err(|e| NamespaceFileError::Yaml { doc, message: e.to_string() })?;
            let mut objects = Vec::new();
            flatten(raw, doc, &mut objects)?;
            for (name, labels) in objects {
                if let Some(first) = defined_in.insert(name.clone(), doc) {
                    return Err(NamespaceFileError::Duplicate { name, first, second: doc });
                }
                set.namespaces.insert(name, labels);
            }
        }
        Ok(set)
    }

    pub fn labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Labels)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

impl FromIterator<(String, Labels)> for NamespaceSet {
    fn from_iter<T: IntoIterator<Item = (String, Labels)>>(iter: T) -> Self {
        Self { namespaces: iter.into_iter().collect() }
    }
}

fn flatten(raw: RawObject, doc: usize, out: &mut Vec<(String, Labels)>) -> Result<(), NamespaceFileError> {
    let invalid = |object: &str, field, message: String| NamespaceFileError::Invalid {
        doc,
        object: object.to_owned(),
        field,
        message,
    };
    match (raw.api_version.as_str(), raw.kind.as_str()) {
        ("v1", "List") => {
            for item in raw.items.unwrap_or_default() {
                flatten(item, doc, out)?;
            }
            Ok(())
        }
        ("v1", "Namespace") => {
            if raw.items.is_some() {
                return Err(invalid("Namespace", "items", "a Namespace has no items".into()));
            }
            let metadata = raw
                .metadata
                .ok_or_else(|| invalid("Namespace", "metadata", "is required (with metadata.name)".into()))?;
            let name = metadata.name.ok_or_else(|| invalid("Namespace", "metadata.name", "is required".into()))?;
            let object = format!("Namespace/{name}");
            check_dns_label(&name).map_err(|m| invalid(&object, "metadata.name", m))?;
            out.push((name, metadata.labels));
            Ok(())
        }
        (api, kind) => Err(invalid(
            &format!("{kind} ({api})"),
            "kind",
            "this file may only hold v1 Namespace objects (or a v1 List of them)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents_and_lists() {
        let set = NamespaceSet::from_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    istio.io/dataplane-mode: ambient\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n---\n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.labels("a").unwrap()["istio.io/dataplane-mode"], "ambient");
        assert!(set.labels("b").unwrap().is_empty());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = NamespaceSet::from_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  lables: {}\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("document 1") && msg.contains("lables"), "{msg}");
    }

    #[test]
    fn bad_name_is_named() {
        let err = NamespaceSet::from_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Foo\n").unwrap_err();
        assert!(matches!(err, NamespaceFileError::Invalid { field: "metadata.name", .. }), "{err}");
        assert!(err.to_string().contains("Namespace/Foo"));
    }

    #[test]
    fn other_kinds_and_duplicates_are_rejected() {
        let err = NamespaceSet::from_yaml("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n").unwrap_err();
        assert!(err.to_string().contains("only hold v1 Namespace"), "{err}");
        let err = NamespaceSet::from_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap_err();
        assert_eq!(err, NamespaceFileError::Duplicate { name: "a".into(), first: 1, second: 2 });
    }

    #[test]
    fn broken_yaml_is_reported_with_document() {
        let err = NamespaceSet::from_yaml("apiVersion: v1\nkind: [\n").unwrap_err();
        assert!(matches!(err, NamespaceFileError::Yaml { doc: 1, .. }), "{err}");
    }
}
