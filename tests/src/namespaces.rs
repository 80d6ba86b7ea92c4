//! The namespaces file node proxies watch (`<run dir>/namespaces.yaml`): Kubernetes `Namespace`
//! objects, one YAML document each, rewritten atomically.

use std::{collections::BTreeMap, path::Path};

use crate::manifest::write_atomic;

/// Namespace name → labels.
pub type Namespaces = BTreeMap<String, BTreeMap<String, String>>;

/// Multi-document YAML; names and values are written as JSON strings (valid YAML scalars).
pub fn render(namespaces: &Namespaces) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let mut out = String::new();
    for (name, labels) in namespaces {
        out.push_str("---\napiVersion: v1\nkind: Namespace\nmetadata:\n");
        out.push_str(&format!("  name: {}\n", quote(name)));
        if labels.is_empty() {
            out.push_str("  labels: {}\n");
            continue;
        }
        out.push_str("  labels:\n");
        for (key, value) in labels {
            out.push_str(&format!("    {}: {}\n", quote(key), quote(value)));
        }
    }
    out
}

pub fn write(path: &Path, namespaces: &Namespaces) -> anyhow::Result<()> {
    write_atomic(path, render(namespaces).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_the_node_proxy_parses() {
        let mut namespaces = Namespaces::new();
        namespaces.insert("mesh".into(), [("istio.io/dataplane-mode".to_owned(), "ambient".to_owned())].into());
        namespaces.insert("plain".into(), BTreeMap::new());
        let set = ambit_common::namespaces::NamespaceSet::from_yaml(&render(&namespaces)).unwrap();
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["namespaces"]["mesh"]["istio.io/dataplane-mode"], "ambient", "{json}");
        assert!(json["namespaces"]["plain"].is_object(), "{json}");
    }
}
