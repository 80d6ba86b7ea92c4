//! One kind's objects, converted: a reflector whose store holds model objects instead of raw
//! API objects.
//!
//! It applies watcher events with the semantics of kube's own reflector store
//! (`kube::runtime::reflector::store::Writer::apply_watcher_event`): `Init` opens a relist
//! buffer, `InitApply` fills it, `InitDone` replaces the whole set at once — so objects deleted
//! while the watch was down (a 410 Gone forces a relist) disappear — and `Apply`/`Delete` edit
//! single objects. Each object is converted once per `resourceVersion`: a relisted object whose
//! version is unchanged keeps its converted form, so a relist of 50 000 pods parses only the
//! pods that changed.

use std::{collections::BTreeMap, sync::Arc};

use ambit_common::config::ParseOutcome;
use kube::{ResourceExt, api::DynamicObject, runtime::watcher::Event};

use super::{
    convert::{self, Converted, Key},
    resources::Resource,
};

#[derive(Clone, Debug)]
struct Cached {
    resource_version: Option<String>,
    converted: Arc<Converted>,
}

#[derive(Debug, Default)]
struct Relist {
    objects: BTreeMap<Key, Cached>,
    /// How many listed objects kept their cached conversion.
    reused: usize,
}

/// Whether the kind's initial list is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listing {
    /// Not listed yet: the source is not ready.
    Pending,
    Listed,
    /// The API server refused the list (CRD not installed, RBAC): treated as empty.
    Unavailable,
}

#[derive(Debug)]
pub(super) struct KindCache {
    pub(super) resource: Resource,
    objects: BTreeMap<Key, Cached>,
    relist: Option<Relist>,
    listing: Listing,
}

impl KindCache {
    pub(super) fn new(resource: Resource) -> Self {
        KindCache { resource, objects: BTreeMap::new(), relist: None, listing: Listing::Pending }
    }

    pub(super) fn listing(&self) -> Listing {
        self.listing
    }

    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Applies one watcher event; returns whether the kind's contribution to a reading changed.
    pub(super) fn apply(&mut self, event: Event<DynamicObject>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(Relist::default());
                false
            }
            Event::InitApply(object) => {
                let (key, cached, reused) = self.cached(object);
                let relist = self.relist.get_or_insert_with(Relist::default);
                relist.reused += usize::from(reused);
                relist.objects.insert(key, cached);
                false
            }
            Event::InitDone => {
                let relist = self.relist.take().unwrap_or_default();
                let same = relist.reused == self.objects.len() && relist.objects.len() == relist.reused;
                let changed = !same || self.listing != Listing::Listed;
                self.objects = relist.objects;
                self.listing = Listing::Listed;
                changed
            }
            Event::Apply(object) => {
                let (key, cached, reused) = self.cached(object);
                self.objects.insert(key, cached);
                !reused
            }
            Event::Delete(object) => self.objects.remove(&convert::key(&object)).is_some(),
        }
    }

    /// The API server will not list this kind: it counts as empty until a list succeeds.
    pub(super) fn unavailable(&mut self) -> bool {
        let changed = !self.objects.is_empty() || self.listing == Listing::Pending;
        self.objects.clear();
        self.relist = None;
        self.listing = Listing::Unavailable;
        changed
    }

    /// Adds this kind's objects and errors to `out`, in namespace/name order.
    pub(super) fn extend_reading(&self, out: &mut ParseOutcome) {
        for cached in self.objects.values() {
            match cached.converted.as_ref() {
                Converted::Valid(object) => out.objects.push(object.clone()),
                Converted::Invalid(error) => out.errors.push(error.clone()),
            }
        }
    }

    /// The cached conversion of `object` if its version is unchanged, else a fresh one.
    fn cached(&self, object: DynamicObject) -> (Key, Cached, bool) {
        let key = convert::key(&object);
        let resource_version = object.resource_version();
        let unchanged = |c: &&Cached| resource_version.is_some() && c.resource_version == resource_version;
        if let Some(hit) = self.objects.get(&key).filter(unchanged) {
            return (key, hit.clone(), true);
        }
        let converted = convert::convert(self.resource.kind, &self.resource.api, object);
        if let Converted::Invalid(error) = &converted {
            // The consumer (the store) reports rejections; this is for tracing the source.
            tracing::debug!(%error, "invalid Kubernetes object");
        }
        (key, Cached { resource_version, converted: Arc::new(converted) }, false)
    }
}

#[cfg(test)]
mod tests;
