//! Local mode's node credentials: a YAML (or JSON) map `key → token` written by whoever starts
//! the proxies (the local harness). A key is a node name (a caller presenting node N's token is
//! node N's proxy) or `waypoint/<namespace>/<gateway name>` (the waypoint deployed for that
//! Gateway). Node names cannot contain `/`, so the two forms never collide.
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

use super::authn::{AuthnError, Claim, WaypointName};

const WAYPOINT_PREFIX: &str = "waypoint/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("reading the node credentials {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "the node credentials {path} are not a map of node name → token: {reason}; write e.g. \
         `node-0: <token>` or `waypoint/<namespace>/<gateway name>: <token>` one per line"
    )]
    Parse { path: String, reason: String },
    #[error("the node credentials {path}: entry {key:?}: {reason}")]
    Invalid { path: String, key: String, reason: String },
    #[error(
        "the node credentials {path}: {first} and {second} have the same token; give every node and waypoint its own"
    )]
    SharedToken { path: String, first: String, second: String },
}

/// Whose token an entry is: what its key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A node name: that node's proxy.
    Node(String),
    /// `waypoint/<namespace>/<gateway name>`: that waypoint.
    Waypoint(WaypointName),
}

impl Holder {
    /// Reads a key: `waypoint/<namespace>/<gateway name>`, else a node name.
    fn parse(key: &str) -> Result<Holder, String> {
        use ambit_common::names::{check_dns_label, check_dns_subdomain};
        let Some(rest) = key.strip_prefix(WAYPOINT_PREFIX) else {
            check_dns_subdomain(key).map_err(|m| {
                format!("not a node name ({m}), nor a waypoint entry waypoint/<namespace>/<gateway name>")
            })?;
            return Ok(Holder::Node(key.to_owned()));
        };
        let form = "a waypoint entry is waypoint/<namespace>/<gateway name>";
        let (namespace, name) = rest.split_once('/').ok_or_else(|| format!("{form}: the gateway name is missing"))?;
        check_dns_label(namespace).map_err(|m| format!("{form}: namespace {namespace:?} {m}"))?;
        check_dns_subdomain(name).map_err(|m| format!("{form}: gateway name {name:?} {m}"))?;
        Ok(Holder::Waypoint(WaypointName { namespace: namespace.to_owned(), name: name.to_owned() }))
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Node(node) => write!(f, "node {node}"),
            Holder::Waypoint(waypoint) => write!(f, "waypoint {waypoint}"),
        }
    }
}

impl From<Holder> for Claim {
    fn from(holder: Holder) -> Claim {
        match holder {
            Holder::Node(node) => Claim::Node(node),
            Holder::Waypoint(waypoint) => Claim::Waypoint(waypoint),
        }
    }
}

/// Node and waypoint tokens, reloaded when the file changes.
pub struct NodeCredentials {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    stamp: Option<Stamp>,
    /// (holder, token), ordered by key.
    tokens: Vec<(Holder, Vec<u8>)>,
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

    /// The node or waypoint whose token `token` is.
    pub fn holder_of(&self, token: &str) -> Result<Holder, AuthnError> {
        let mut loaded = self.loaded.lock().expect("node credentials");
        self.reload_if_changed(&mut loaded);
        // Every entry is compared, in constant time, whatever matches: the time taken says
        // nothing about which entry's token (or how much of it) was guessed right.
        let mut found = None;
        for (holder, expected) in &loaded.tokens {
            if constant_time_eq(token.as_bytes(), expected) {
                found = Some(holder);
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
                tracing::info!(file = %self.path.display(), entries = tokens.len(), "node credentials reloaded");
                loaded.tokens = tokens;
            }
            Err(e) => tracing::error!("{e}; the previous node credentials stay in force"),
        }
        loaded.stamp = stamp;
    }
}

fn read(path: &Path) -> Result<Vec<(Holder, Vec<u8>)>, CredentialsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CredentialsError::Read { path: shown.clone(), reason: e.to_string() })?;
    parse(&text, &shown)
}

/// Parses and checks: keys are node names (DNS subdomains) or `waypoint/<namespace>/<gateway
/// name>`, tokens non-empty without whitespace, and no two entries share a token (which would
/// make a token prove two nodes, or a node and a waypoint).
pub fn parse(text: &str, path: &str) -> Result<Vec<(Holder, Vec<u8>)>, CredentialsError> {
    let map: BTreeMap<String, String> = serde_yaml::from_str(text)
        .map_err(|e| CredentialsError::Parse { path: path.to_owned(), reason: e.to_string() })?;
    let invalid =
        |key: &str, reason: String| CredentialsError::Invalid { path: path.to_owned(), key: key.to_owned(), reason };
    let mut by_token: BTreeMap<&str, &str> = BTreeMap::new();
    let mut tokens = Vec::with_capacity(map.len());
    for (key, token) in &map {
        let holder = Holder::parse(key).map_err(|reason| invalid(key, reason))?;
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            return Err(invalid(key, "the token must be non-empty and without whitespace".into()));
        }
        if let Some(first) = by_token.insert(token, key) {
            return Err(CredentialsError::SharedToken {
                path: path.to_owned(),
                first: first.to_owned(),
                second: key.clone(),
            });
        }
        tokens.push((holder, token.as_bytes().to_vec()));
    }
    Ok(tokens)
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
        assert_eq!(yaml[1], (Holder::Node("node-1".into()), b"bbbb".to_vec()));
    }

    #[test]
    fn waypoint_entries_name_a_namespace_and_a_gateway() {
        let parsed = parse(
            "node-0: aaaa
waypoint/shop/waypoint: bbbb
",
            "f",
        )
        .unwrap();
        let waypoint = WaypointName { namespace: "shop".into(), name: "waypoint".into() };
        assert_eq!(parsed[1], (Holder::Waypoint(waypoint), b"bbbb".to_vec()));
    }

    #[test]
    fn malformed_waypoint_keys_name_the_file_the_key_and_the_form() {
        for (key, what) in [
            ("waypoint/shop", "the gateway name is missing"),
            ("waypoint/shop/", "gateway name \"\""),
            ("waypoint//waypoint", "namespace \"\""),
            ("waypoint/Shop/waypoint", "namespace \"Shop\""),
            ("waypoint/shop/way/point", "gateway name \"way/point\""),
        ] {
            let err = parse(&format!("{key}: aaaa\n"), "/run/nodes.yaml").unwrap_err().to_string();
            let expected = format!(
                "the node credentials /run/nodes.yaml: entry {key:?}: a waypoint entry is \
                 waypoint/<namespace>/<gateway name>: {what}"
            );
            assert!(err.starts_with(&expected), "{key}: {err}");
        }
        let err = parse("gateway/shop/waypoint: aaaa\n", "f").unwrap_err().to_string();
        assert!(err.contains("nor a waypoint entry waypoint/<namespace>/<gateway name>"), "{err}");
        let err = parse("node-0: same\nwaypoint/shop/waypoint: same\n", "f").unwrap_err().to_string();
        assert!(err.contains("node-0 and waypoint/shop/waypoint have the same token"), "{err}");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = parse("node-0: same\nnode-1: same\n", "f").unwrap_err().to_string();
        assert!(err.contains("node-0 and node-1 have the same token"), "{err}");
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
        let node = |name: &str| Holder::Node(name.into());
        assert!(credentials.holder_of("token-zero").is_err(), "no file, no node");
        std::fs::write(&path, "node-0: token-zero\n").unwrap();
        assert_eq!(credentials.holder_of("token-zero").unwrap(), node("node-0"));
        assert!(credentials.holder_of("token-one").is_err());

        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, "node-0: token-zero\nnode-1: token-one\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(credentials.holder_of("token-one").unwrap(), node("node-1"));

        std::fs::write(&tmp, "node-0: [not, a, token]\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(credentials.holder_of("token-one").unwrap(), node("node-1"), "the last good file stays in force");
        std::fs::remove_file(&path).unwrap();
    }
}
