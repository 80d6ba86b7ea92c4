//! Multi-document YAML → validated objects, errors and skipped documents.
//!
//! Each document stands alone: a broken one is reported and the others still load. A
//! `kind: List` is expanded into its items. Empty documents are ignored. Documents of kinds
//! Ambit does not read (ConfigMaps, Deployments, …) are reported as [`Skipped`], not as
//! errors, because a directory of cluster YAML holds many of them.

use serde::Serialize;
use serde_yaml::Value;

use super::{
    error::{ConfigError, ObjectRef, Origin},
    kind::Kind,
    model::Object,
    validate::DEFAULT_NAMESPACE,
};

mod decode;
mod documents;

pub use documents::{MAX_DEPTH, MAX_DOCUMENT_BYTES};

/// A validated object and the document it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LocatedObject {
    pub object: Object,
    pub origin: Origin,
}

/// A document Ambit does not read, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub api_version: String,
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub origin: Origin,
    pub reason: String,
}

/// Everything one source read: the objects that are valid on their own, the errors, and the
/// documents skipped. Outcomes of several files combine with [`ParseOutcome::extend`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ParseOutcome {
    pub objects: Vec<LocatedObject>,
    pub errors: Vec<ConfigError>,
    pub skipped: Vec<Skipped>,
}

impl ParseOutcome {
    pub fn extend(&mut self, other: ParseOutcome) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
        self.skipped.extend(other.skipped);
    }
}

/// Parses every document in `text`; `origin` names the source in errors (a file path, say).
pub fn parse_documents(text: &str, origin: &str) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for chunk in documents::split(text) {
        let at = Origin { source: origin.to_string(), document: chunk.index, item: None, line: Some(chunk.first_line) };
        if chunk.text.len() > MAX_DOCUMENT_BYTES {
            out.errors.push(doc_error(
                &at,
                format!(
                    "document {} is {} bytes; the limit is {} (1 MiB) — split it into smaller objects",
                    chunk.index,
                    chunk.text.len(),
                    MAX_DOCUMENT_BYTES
                ),
            ));
            continue;
        }
        if documents::is_blank(chunk.text) {
            continue;
        }
        let value: Value = match serde_yaml::from_str(chunk.text) {
            Ok(v) => v,
            Err(e) => {
                let mut err = decode::serde_error(&e, None, &at);
                err.message = format!("invalid YAML: {}", err.message);
                out.errors.push(err);
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        if documents::depth(&value) > MAX_DEPTH {
            out.errors.push(doc_error(&at, format!("document {} nests deeper than {MAX_DEPTH} levels", chunk.index)));
            continue;
        }
        document(&value, chunk.text, &at, &mut out);
    }
    out
}

fn doc_error(at: &Origin, message: String) -> ConfigError {
    ConfigError::new(None, "", message).with_origin(at.clone())
}

/// One parsed document: a List, or a single object.
fn document(value: &Value, text: &str, at: &Origin, out: &mut ParseOutcome) {
    let head = Head::read(value);
    let is_list =
        head.kind.as_deref().is_some_and(|k| k == "List" || (k.ends_with("List") && value.get("items").is_some()));
    if is_list {
        let Some(items) = value.get("items").and_then(Value::as_sequence) else {
            out.errors.push(doc_error(at, "a List needs an `items` sequence".into()));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let at = Origin { item: Some(i), line: None, ..at.clone() };
            match serde_yaml::to_string(item) {
                Ok(item_text) => object(item, &item_text, &at, out),
                Err(e) => out.errors.push(doc_error(&at, format!("cannot read list item: {e}"))),
            }
        }
        return;
    }
    object(value, text, at, out);
}

/// What can be read from any document before its kind is known.
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

impl Head {
    fn read(value: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let meta = value.get("metadata");
        Head {
            api_version: text(value.get("apiVersion")),
            kind: text(value.get("kind")),
            name: text(meta.and_then(|m| m.get("name"))),
            namespace: text(meta.and_then(|m| m.get("namespace"))),
        }
    }
}

fn object(value: &Value, text: &str, at: &Origin, out: &mut ParseOutcome) {
    if !value.is_mapping() {
        out.errors.push(doc_error(at, "document is not a mapping; expected a Kubernetes object".into()));
        return;
    }
    let head = Head::read(value);
    let (Some(api_version), Some(kind_name)) = (head.api_version.clone(), head.kind.clone()) else {
        let missing = if head.api_version.is_none() { "apiVersion" } else { "kind" };
        out.errors.push(
            ConfigError::new(None, missing, format!("{missing} is missing; every object needs apiVersion and kind"))
                .with_origin(at.clone()),
        );
        return;
    };
    let kind = match Kind::resolve(&api_version, &kind_name) {
        Ok(kind) => kind,
        Err(reason) => {
            let (name, namespace) = (head.name, head.namespace);
            out.skipped.push(Skipped { api_version, kind: kind_name, name, namespace, origin: at.clone(), reason });
            return;
        }
    };
    let object_ref = head.name.filter(|n| !n.is_empty()).map(|name| {
        let ns = match (kind.is_namespaced(), head.namespace.filter(|n| !n.is_empty())) {
            (false, _) => String::new(),
            (true, Some(ns)) => ns,
            (true, None) => DEFAULT_NAMESPACE.to_string(),
        };
        ObjectRef::new(kind, ns, name)
    });
    match decode::decode(kind, text, object_ref.as_ref(), at) {
        Ok(object) => out.objects.push(LocatedObject { object, origin: at.clone() }),
        Err(e) => out.errors.push(if e.origin.is_some() { e } else { e.with_origin(at.clone()) }),
    }
}

#[cfg(test)]
mod tests;
