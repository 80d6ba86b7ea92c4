//! The local source: a directory of multi-document YAML files.
