//! Local mode's node credentials: a YAML (or JSON) map `node name → token` written by whoever
//! starts the node proxies (the local harness). A caller presenting node N's token is node N.
//!
//! The file is checked for changes (size, modification time, inode) on every request and
//! re-read when it changed: no background task, and a write-then-rename is picked up at once.
//! A file that no longer parses keeps the last good credentials in force (and says so in the
//! log); at start it must parse if it exists, and is picked up when it appears if it does not.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use super::authn::AuthnError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("reading the node credentials {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "the node credentials {path} are not a map of node name → token: {reason}; write e.g. \
         `node-0: <token>` one per line"
    )]
    Parse { path: String, reason: String },
    #[error("the node credentials {path}: node {node:?}: {reason}")]
    Invalid { path: String, node: String, reason: String },
    #[error("the node credentials {path}: nodes {first} and {second} have the same token; give every node its own")]
    SharedToken { path: String, first: String, second: String },
}

/// Node tokens, reloaded when the file changes.
pub struct NodeCredentials {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    stamp: Option<Stamp>,
    /// (node, token), ordered by node.
    tokens: Vec<(String, Vec<u8>)>,
}

/// What tells a changed file from an unchanged one without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp { len: m.len(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec(), ino: m.ino() })
    }
}

impl NodeCredentials {
    /// Reads the file, which must be valid if it exists. One that does not exist yet (whoever
    /// starts the node proxies writes it) is read when it appears; until then every token is
    /// refused.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let stamp = Stamp::of(path);
        let tokens = match stamp {
            Some(_) => read(path)?,
            None => {
                tracing::warn!(
                    file = %path.display(),
                    "the node credentials file does not exist (yet): node proxies are refused until it does"
                );
                Vec::new()
            }
        };
        Ok(Self { path: path.to_owned(), loaded: Mutex::new(Loaded { stamp, tokens }) })
    }

    /// The node whose token `token` is.
    pub fn node_for(&self, token: &str) -> Result<String, AuthnError> {
        let mut loaded = self.loaded.lock().expect("node credentials");
        self.reload_if_changed(&mut loaded);
        // Every entry is compared, in constant time, whatever matches: the time taken says
        // nothing about which node's token (or how much of it) was guessed right.
        let mut found = None;
        for (node, expected) in &loaded.tokens {
            if constant_time_eq(token.as_bytes(), expected) {
                found = Some(node);
            }
        }
        found.cloned().ok_or_else(|| AuthnError::UnknownToken { file: self.path.display().to_string() })
    }

    fn reload_if_changed(&self, loaded: &mut Loaded) {
        let stamp = Stamp::of(&self.path);
        if stamp == loaded.stamp {
            return;
        }
        match read(&self.path) {
            Ok(tokens) => {
                tracing::info!(file = %self.path.display(), nodes = tokens.len(), "node credentials reloaded");
                loaded.tokens = tokens;
            }
            Err(e) => tracing::error!("{e}; the previous node credentials stay in force"),
        }
        loaded.stamp = stamp;
    }
}

fn read(path: &Path) -> Result<Vec<(String, Vec<u8>)>, CredentialsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CredentialsError::Read { path: shown.clone(), reason: e.to_string() })?;
    parse(&text, &shown)
}

/// Parses and checks: node names are DNS subdomains, tokens non-empty without whitespace, and
/// no two nodes share a token (which would make a token prove two nodes).
pub fn parse(text: &str, path: &str) -> Result<Vec<(String, Vec<u8>)>, CredentialsError> {
    let map: BTreeMap<String, String> = serde_yaml::from_str(text)
        .map_err(|e| CredentialsError::Parse { path: path.to_owned(), reason: e.to_string() })?;
    let invalid =
        |node: &str, reason: String| CredentialsError::Invalid { path: path.to_owned(), node: node.to_owned(), reason };
    let mut by_token: BTreeMap<&str, &str> = BTreeMap::new();
    for (node, token) in &map {
        ambit_common::names::check_dns_subdomain(node).map_err(|m| invalid(node, format!("not a node name: {m}")))?;
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(invalid(node, "the token must be non-empty and without whitespace".into()));
        }
        if let Some(first) = by_token.insert(token, node) {
            return Err(CredentialsError::SharedToken {
                path: path.to_owned(),
                first: first.to_owned(),
                second: node.clone(),
            });
        }
    }
    Ok(map.into_iter().map(|(node, token)| (node, token.into_bytes())).collect())
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_maps_parse() {
        let yaml = parse("node-0: aaaa\nnode-1: bbbb\n", "f").unwrap();
        let json = parse(r#"{"node-0": "aaaa", "node-1": "bbbb"}"#, "f").unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml[1], ("node-1".to_owned(), b"bbbb".to_vec()));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = parse("node-0: same\nnode-1: same\n", "f").unwrap_err().to_string();
        assert!(err.contains("nodes node-0 and node-1 have the same token"), "{err}");
        let err = parse("Node_0: x\n", "f").unwrap_err().to_string();
        assert!(err.contains("not a node name"), "{err}");
        let err = parse("node-0: ''\n", "f").unwrap_err().to_string();
        assert!(err.contains("non-empty"), "{err}");
        let err = parse("- node-0\n", "f").unwrap_err().to_string();
        assert!(err.contains("not a map of node name → token"), "{err}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last_good() {
        let path = std::env::temp_dir().join(format!("ambit-node-credentials-{}.yaml", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let credentials = NodeCredentials::load(&path).unwrap();
        assert!(credentials.node_for("token-zero").is_err(), "no file, no node");
        std::fs::write(&path, "node-0: token-zero\n").unwrap();
        assert_eq!(credentials.node_for("token-zero").unwrap(), "node-0");
        assert!(credentials.node_for("token-one").is_err());

        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, "node-0: token-zero\nnode-1: token-one\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(credentials.node_for("token-one").unwrap(), "node-1");

        std::fs::write(&tmp, "node-0: [not, a, token]\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(credentials.node_for("token-one").unwrap(), "node-1", "the last good file stays in force");
        std::fs::remove_file(&path).unwrap();
    }
}
