//! One object's text → its raw type → its model type, with serde's errors reworded into
//! [`ConfigError`]s that name the object and the field path.

use serde::de::DeserializeOwned;

use crate::config::{
    error::{ConfigError, ObjectRef, Origin},
    kind::Kind,
    model::{self, Object},
    raw::{self, IstioObject},
};

/// Decodes `text` (one document) as `kind`.
pub(crate) fn decode(
    kind: Kind,
    text: &str,
    object: Option<&ObjectRef>,
    origin: &Origin,
) -> Result<Object, ConfigError> {
    let cx = Cx { text, object, origin };
    Ok(match kind {
        Kind::Namespace => Object::Namespace(cx.typed::<raw::k8s::Namespace, _>()?),
        Kind::Pod => Object::Pod(cx.typed::<raw::k8s::Pod, _>()?),
        Kind::Service => Object::Service(cx.typed::<raw::k8s::Service, _>()?),
        Kind::EndpointSlice => Object::EndpointSlice(cx.typed::<raw::k8s::EndpointSlice, _>()?),
        Kind::ServiceAccount => Object::ServiceAccount(cx.typed::<raw::k8s::ServiceAccount, _>()?),
        Kind::Gateway => Object::Gateway(cx.typed::<raw::k8s::Gateway, _>()?),
        Kind::VirtualService => Object::VirtualService(
            cx.typed::<IstioObject<raw::virtual_service::VirtualServiceSpec>, model::VirtualService>()?,
        ),
        Kind::DestinationRule => Object::DestinationRule(
            cx.typed::<IstioObject<raw::destination_rule::DestinationRuleSpec>, model::DestinationRule>()?,
        ),
        Kind::ServiceEntry => {
            Object::ServiceEntry(cx.typed::<IstioObject<raw::service_entry::ServiceEntrySpec>, model::ServiceEntry>()?)
        }
        Kind::AuthorizationPolicy => Object::AuthorizationPolicy(
            cx.typed::<IstioObject<raw::security::AuthorizationPolicySpec>, model::AuthorizationPolicy>()?,
        ),
        Kind::PeerAuthentication => Object::PeerAuthentication(
            cx.typed::<IstioObject<raw::security::PeerAuthenticationSpec>, model::PeerAuthentication>()?,
        ),
    })
}

struct Cx<'a> {
    text: &'a str,
    object: Option<&'a ObjectRef>,
    origin: &'a Origin,
}

impl Cx<'_> {
    fn typed<R, M>(&self) -> Result<M, ConfigError>
    where
        R: DeserializeOwned,
        M: TryFrom<R, Error = ConfigError>,
    {
        let raw: R = serde_yaml::from_str(self.text).map_err(|e| serde_error(&e, self.object, self.origin))?;
        M::try_from(raw).map_err(|e| e.with_origin(self.origin.clone()))
    }
}

/// serde_yaml writes `spec.http[0]: unknown field ``weigth``, expected one of … at line 9
/// column 7`; this splits off the path, drops the position (the origin carries the line, counted
/// from the start of the file) and suggests the nearest known field.
pub(crate) fn serde_error(e: &serde_yaml::Error, object: Option<&ObjectRef>, origin: &Origin) -> ConfigError {
    let mut text = e.to_string();
    let mut origin = origin.clone();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        match text.strip_suffix(&suffix) {
            Some(stripped) => text = stripped.to_string(),
            // libyaml's syntax errors name lines inside the message; make them file lines.
            None => text = shift_lines(&text, origin.line.map_or(0, |first| first - 1)),
        }
        origin.line = origin.line.map(|first| first + loc.line() - 1);
    } else {
        origin.line = None;
    }
    let (field, message) = split_path(&text);
    let message = with_hint(message);
    ConfigError::new(object.cloned(), field, message).with_origin(origin)
}

/// Adds `offset` to every `line N` in `text`.
fn shift_lines(text: &str, offset: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("line ") {
        let (before, after) = rest.split_at(i + "line ".len());
        out.push_str(before);
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `spec.http[0]: unknown field …` → (`spec.http[0]`, `unknown field …`). A prefix is a path
/// only if it has no spaces (serde's own messages, like `invalid type: …`, have one).
fn split_path(text: &str) -> (String, String) {
    match text.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') => (path.to_string(), rest.to_string()),
        _ => (String::new(), text.to_string()),
    }
}

/// For `unknown field ``weigth``, expected one of ``destination``, ``weight``…`, suggests the
/// closest expected name when it is a likely typo.
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
mod tests {
    use super::*;

    #[test]
    fn splits_paths_and_hints() {
        assert_eq!(split_path("spec.http[0]: unknown field `x`"), ("spec.http[0]".into(), "unknown field `x`".into()));
        assert_eq!(split_path("invalid type: string \"a\", expected u32").0, "");
        let m = with_hint("unknown field `weigth`, expected one of `destination`, `weight`, `headers`".into());
        assert!(m.ends_with("did you mean `weight`?"), "{m}");
        let m = with_hint("unknown field `zzzzzz`, expected `destination` or `weight`".into());
        assert!(!m.contains("did you mean"), "{m}");
        assert_eq!(edit_distance("lables", "labels"), 2);
        assert_eq!(shift_lines("x at line 8 column 5, y at line 3", 10), "x at line 18 column 5, y at line 13");
    }
}
