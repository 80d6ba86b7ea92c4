//! Header operations (VirtualService `headers.request` / `headers.response`, route-level and per
//! destination), compiled once per configuration update and applied to each request or response.
//!
//! The control plane orders every list as Envoy applies it — removals, then sets and appends in
//! the order written — so a list is applied front to back. Names and values are checked at
//! compile time: a table with an operation the data path could not perform is refused whole.

use ambit_common::api::v1::{HeaderAction, HeaderOperation};
use http::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderOpError {
    #[error("header operation {index}: {name:?} is not a valid header name")]
    InvalidName { index: usize, name: String },
    #[error(
        "header operation {index}: {name:?} is a pseudo-header or the Host header, which header \
         operations cannot change; use `rewrite.authority` to change the authority"
    )]
    Reserved { index: usize, name: String },
    #[error("header operation {index} ({name}): {value:?} is not a valid header value (control characters?)")]
    InvalidValue { index: usize, name: String, value: String },
    #[error(
        "header operation {index} ({name}): action {action} is unknown (is the control plane newer than this waypoint?)"
    )]
    UnknownAction { index: usize, name: String, action: i32 },
}

/// A compiled list of header operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps(Vec<Op>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Set(HeaderName, HeaderValue),
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
}

impl HeaderOps {
    pub fn compile(operations: &[HeaderOperation]) -> Result<Self, HeaderOpError> {
        operations.iter().enumerate().map(|(index, op)| compile_one(index, op)).collect::<Result<_, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies the operations in order.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for op in &self.0 {
            match op {
                Op::Set(name, value) => {
                    headers.insert(name.clone(), value.clone());
                }
                Op::Append(name, value) => {
                    headers.append(name.clone(), value.clone());
                }
                Op::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }
}

fn compile_one(index: usize, op: &HeaderOperation) -> Result<Op, HeaderOpError> {
    if op.name.starts_with(':') || op.name.eq_ignore_ascii_case("host") {
        return Err(HeaderOpError::Reserved { index, name: op.name.clone() });
    }
    let name = HeaderName::from_bytes(op.name.as_bytes())
        .map_err(|_| HeaderOpError::InvalidName { index, name: op.name.clone() })?;
    let value = || {
        HeaderValue::from_str(&op.value).map_err(|_| HeaderOpError::InvalidValue {
            index,
            name: op.name.clone(),
            value: op.value.clone(),
        })
    };
    match HeaderAction::try_from(op.action) {
        Ok(HeaderAction::Set) => Ok(Op::Set(name, value()?)),
        Ok(HeaderAction::Append) => Ok(Op::Append(name, value()?)),
        Ok(HeaderAction::Remove) => Ok(Op::Remove(name)),
        Ok(HeaderAction::Unspecified) | Err(_) => {
            Err(HeaderOpError::UnknownAction { index, name: op.name.clone(), action: op.action })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: HeaderAction, name: &str, value: &str) -> HeaderOperation {
        HeaderOperation { action: action as i32, name: name.into(), value: value.into() }
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn set_replaces_every_value_append_adds_one_remove_removes_all() {
        let ops = HeaderOps::compile(&[
            op(HeaderAction::Remove, "x-internal", ""),
            op(HeaderAction::Set, "x-version", "v2"),
            op(HeaderAction::Append, "x-trace", "waypoint"),
        ])
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-internal", HeaderValue::from_static("1"));
        headers.append("x-internal", HeaderValue::from_static("2"));
        headers.append("x-version", HeaderValue::from_static("v1"));
        headers.append("x-version", HeaderValue::from_static("v0"));
        headers.append("x-trace", HeaderValue::from_static("client"));
        ops.apply(&mut headers);
        assert!(values(&headers, "x-internal").is_empty());
        assert_eq!(values(&headers, "x-version"), ["v2"]);
        assert_eq!(values(&headers, "x-trace"), ["client", "waypoint"]);
    }

    #[test]
    fn operations_apply_front_to_back() {
        // A removal after a set of the same header wins, and a set after an append replaces it.
        let ops = HeaderOps::compile(&[
            op(HeaderAction::Append, "a", "1"),
            op(HeaderAction::Set, "a", "2"),
            op(HeaderAction::Set, "b", "1"),
            op(HeaderAction::Remove, "b", ""),
        ])
        .unwrap();
        let mut headers = HeaderMap::new();
        ops.apply(&mut headers);
        assert_eq!(values(&headers, "a"), ["2"]);
        assert!(values(&headers, "b").is_empty());
    }

    #[test]
    fn names_are_case_insensitive() {
        let ops = HeaderOps::compile(&[op(HeaderAction::Set, "X-Canary", "yes")]).unwrap();
        let mut headers = HeaderMap::new();
        ops.apply(&mut headers);
        assert_eq!(values(&headers, "x-canary"), ["yes"]);
    }

    #[test]
    fn invalid_operations_are_refused_with_what_is_wrong() {
        let error = |o| HeaderOps::compile(&[op(HeaderAction::Set, "ok", "1"), o]).unwrap_err();
        assert!(matches!(error(op(HeaderAction::Set, "bad name", "v")), HeaderOpError::InvalidName { index: 1, .. }));
        assert!(matches!(
            error(op(HeaderAction::Set, "x", "line\nbreak")),
            HeaderOpError::InvalidValue { index: 1, .. }
        ));
        let reserved = error(op(HeaderAction::Set, "Host", "evil"));
        assert!(reserved.to_string().contains("rewrite.authority"), "{reserved}");
        assert!(matches!(error(op(HeaderAction::Remove, ":path", "")), HeaderOpError::Reserved { .. }));
        let unknown = HeaderOperation { action: 42, name: "x".into(), value: String::new() };
        assert!(matches!(error(unknown), HeaderOpError::UnknownAction { action: 42, .. }));
    }
}
