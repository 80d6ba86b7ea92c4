//! The current valid configuration, with last-good-version semantics.
//!
//! A source that re-reads everything (a directory, a Kubernetes relist) hands each complete
//! reading to [`ConfigStore::apply`]:
//! - an object that parses and validates replaces its previous version;
//! - an object whose new version is invalid keeps its last good version in force and is
//!   listed in [`ConfigStore::rejections`] with its error;
//! - an object no longer present is removed — except that when a document of some source
//!   could not be read at all (bad YAML syntax, too large), the objects last read from that
//!   source are kept, because nobody can tell whether the broken document still holds them;
//! - cross-object checks (see [`cross`]) reject the referencing object, which likewise keeps
//!   its last good version.
//!
//! The result is published as an immutable [`Snapshot`] whose version increases by one each
//! time the effective configuration changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::Serialize;

use super::{
    error::{ConfigError, ObjectRef, Origin},
    model::Object,
    parse::ParseOutcome,
};

pub mod cross;
mod snapshot;

pub use snapshot::Snapshot;

/// An object in force and the document it was read from.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) object: Arc<Object>,
    pub(crate) origin: Origin,
}

/// A problem from the last [`ConfigStore::apply`], and whether a last good version of the
/// object stays in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub error: ConfigError,
    pub last_good_kept: bool,
}

#[derive(Debug)]
pub struct ConfigStore {
    current: BTreeMap<ObjectRef, Entry>,
    rejections: Vec<Rejection>,
    snapshot: Snapshot,
    /// Short host names resolve under this domain in cross-object checks.
    cluster_domain: String,
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self::with_cluster_domain(super::hosts::DEFAULT_CLUSTER_DOMAIN)
    }
}

impl ConfigStore {
    /// A store for a cluster with the default DNS domain (`cluster.local`).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store for a cluster whose services live under `cluster_domain`
    /// (`<name>.<namespace>.svc.<cluster_domain>`).
    pub fn with_cluster_domain(cluster_domain: &str) -> Self {
        Self {
            current: BTreeMap::new(),
            rejections: Vec::new(),
            snapshot: Snapshot::default(),
            cluster_domain: cluster_domain.to_string(),
        }
    }

    /// The effective configuration.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }

    /// The problems found by the last [`apply`](Self::apply).
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// Applies a complete reading of the source; returns the (possibly unchanged) snapshot.
    pub fn apply(&mut self, reading: ParseOutcome) -> Snapshot {
        let mut errors = Vec::new();
        let mut candidate = self.candidates(reading, &mut errors);
        cross::check(&mut candidate, &self.current, &self.cluster_domain, &mut errors);
        self.rejections = errors
            .into_iter()
            .map(|error| {
                let kept = error.object.as_ref().is_some_and(|o| {
                    candidate.get(o).zip(self.current.get(o)).is_some_and(|(c, p)| Arc::ptr_eq(&c.object, &p.object))
                });
                Rejection { error, last_good_kept: kept }
            })
            .collect();
        let changed = candidate.len() != self.current.len()
            || candidate.iter().zip(&self.current).any(|((ka, a), (kb, b))| ka != kb || a.object != b.object);
        if changed {
            let objects = candidate.iter().map(|(k, e)| (k.clone(), e.object.clone())).collect();
            self.snapshot = Snapshot::new(self.snapshot.version() + 1, objects);
        }
        self.current = candidate;
        self.snapshot.clone()
    }

    /// The objects that would be in force before cross-object checks: new valid versions,
    /// last good versions of rejected objects, and the objects of unreadable sources.
    fn candidates(&self, reading: ParseOutcome, errors: &mut Vec<ConfigError>) -> BTreeMap<ObjectRef, Entry> {
        let mut seen: BTreeMap<ObjectRef, Vec<Origin>> = BTreeMap::new();
        let mut valid: BTreeMap<ObjectRef, Entry> = BTreeMap::new();
        let mut rejected: BTreeSet<ObjectRef> = BTreeSet::new();
        let mut unreadable: BTreeSet<String> = BTreeSet::new();
        for e in &reading.errors {
            match (&e.object, &e.origin) {
                (Some(o), origin) => {
                    rejected.insert(o.clone());
                    seen.entry(o.clone()).or_default().extend(origin.as_deref().cloned());
                }
                (None, Some(origin)) => {
                    unreadable.insert(origin.source.clone());
                }
                (None, None) => {}
            }
        }
        errors.extend(reading.errors);
        for located in reading.objects {
            let key = located.object.object_ref();
            seen.entry(key.clone()).or_default().push(located.origin.clone());
            valid.insert(key, Entry { object: Arc::new(located.object), origin: located.origin });
        }
        for (key, origins) in seen.iter().filter(|(_, o)| o.len() > 1) {
            let places: Vec<String> = origins.iter().map(ToString::to_string).collect();
            let message = format!("defined more than once ({}); keep one", places.join(" and "));
            let mut error = ConfigError::new(Some(key.clone()), "", message);
            error.origin = origins.last().cloned().map(Box::new);
            errors.push(error);
            valid.remove(key);
            rejected.insert(key.clone());
        }
        for key in &rejected {
            valid.remove(key);
            if let Some(previous) = self.current.get(key) {
                valid.insert(key.clone(), previous.clone());
            }
        }
        for (key, previous) in &self.current {
            if !valid.contains_key(key) && !rejected.contains(key) && unreadable.contains(&previous.origin.source) {
                valid.insert(key.clone(), previous.clone());
            }
        }
        valid
    }
}

#[cfg(test)]
mod tests;
