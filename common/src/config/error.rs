//! The one error type of the config model: which object, which field, what is wrong.
//!
//! Messages follow the shape of `istioctl analyze` and Istio's validation webhook:
//! `VirtualService/bookinfo/reviews: spec.http[0].route: weights sum to 90; they must sum to 100`.

use std::fmt;

use serde::Serialize;

use super::kind::Kind;

/// Names one object: `kind/namespace/name`, or `kind/name` for cluster-scoped kinds.
/// Also the key of the [`ConfigStore`](super::store::ConfigStore).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    /// Empty for cluster-scoped kinds (Namespace).
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind, namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Where a document came from: the source (a file name, `kubernetes`, …), the document's
/// 1-based index in it, the item index inside a `kind: List`, and a line when known: the
/// exact line for YAML syntax and type errors, else the line where the document starts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub source: String,
    pub document: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Origin {
    pub fn new(source: impl Into<String>, document: usize) -> Self {
        Self { source: source.into(), document, item: None, line: None }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, " items[{item}]")?;
        }
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        Ok(())
    }
}

/// An invalid object, or a document that could not be read as one.
///
/// `object` is `None` only when the document's kind and name could not be read (bad YAML
/// syntax, a document that is not a mapping, one that is too large or too deep); `origin`
/// then says where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub object: Option<ObjectRef>,
    /// Path of the offending field from the object's root, e.g. `spec.http[0].route[1].weight`;
    /// empty when the whole object (or document) is at fault.
    pub field: String,
    pub message: String,
    /// Boxed to keep `Result<_, ConfigError>` small.
    pub origin: Option<Box<Origin>>,
}

impl ConfigError {
    pub fn new(object: Option<ObjectRef>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { object, field: field.into(), message: message.into(), origin: None }
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(Box::new(origin));
        self
    }

    fn render(&self) -> String {
        let mut out = match (&self.object, &self.origin) {
            (Some(object), _) => object.to_string(),
            (None, Some(origin)) => origin.to_string(),
            (None, None) => "config".to_string(),
        };
        if !self.field.is_empty() {
            out.push_str(": ");
            out.push_str(&self.field);
        }
        out.push_str(": ");
        out.push_str(&self.message);
        if let (Some(_), Some(origin)) = (&self.object, &self.origin) {
            out.push_str(&format!(" (in {origin})"));
        }
        out
    }
}

/// A field-level error before the object it belongs to is attached; validation code
/// returns these and the object's `TryFrom` turns them into [`ConfigError`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn for_object(self, object: &ObjectRef) -> ConfigError {
        ConfigError::new(Some(object.clone()), self.field, self.message)
    }
}

/// A field path under construction: `Path::root("spec").key("http").index(0)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root(name: &str) -> Self {
        Self(name.to_string())
    }

    pub(crate) fn key(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return Self(name.to_string());
        }
        Self(format!("{}.{name}", self.0))
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// A map entry: `headers[end-user]`.
    pub(crate) fn entry(&self, k: impl fmt::Display) -> Self {
        Self(format!("{}[{k}]", self.0))
    }

    pub(crate) fn err(&self, message: impl Into<String>) -> FieldError {
        FieldError { field: self.0.clone(), message: message.into() }
    }
}

pub(crate) type FieldResult<T> = Result<T, FieldError>;
