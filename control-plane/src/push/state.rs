//! What every subscriber is served from: one compiled configuration with each resource encoded
//! once. A thousand node proxies receive the same shared resources; encoding them a thousand
//! times would dominate the control plane's cost.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use ambit_common::{
    api::v1::{Resource, ResourceType, resource::Kind},
    discovery::state::resource_type,
};
use bytes::{Bytes, BytesMut};
use prost::Message;

use super::view::{SharedDelta, compress_if_large, put_upsert};
use crate::compile::{Compiled, WaypointKey};

pub type ResourceKey = (ResourceType, String);

/// A resource encoded as a protobuf `Resource` message, with a digest for cheap comparison.
#[derive(Clone, Debug)]
pub struct EncodedResource {
    pub bytes: Bytes,
    digest: u64,
}

impl EncodedResource {
    fn new(resource: &Resource) -> Self {
        let bytes = Bytes::from(resource.encode_to_vec());
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        Self { digest: hasher.finish(), bytes }
    }

    pub fn same_as(&self, other: &Self) -> bool {
        self.digest == other.digest && self.bytes == other.bytes
    }
}

/// Resources by type and name.
#[derive(Debug, Default)]
pub struct EncodedSet {
    pub resources: BTreeMap<ResourceKey, EncodedResource>,
    /// Every resource as `Update.upserts` fields (compressed when large), for full updates
    /// (built on first use).
    full_block: OnceLock<Bytes>,
}

impl EncodedSet {
    fn from_resources<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        let resources = resources
            .into_iter()
            .filter_map(|r| Some(((resource_type(r)?, r.name.clone()), EncodedResource::new(r))))
            .collect();
        Self { resources, full_block: OnceLock::new() }
    }

    pub fn full_block(&self) -> Bytes {
        self.full_block
            .get_or_init(|| {
                let size: usize = self.resources.values().map(|r| r.bytes.len() + 8).sum();
                let mut block = BytesMut::with_capacity(size);
                for resource in self.resources.values() {
                    put_upsert(&mut block, &resource.bytes);
                }
                compress_if_large(block.freeze())
            })
            .clone()
    }
}

/// Who a subscriber is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Scope {
    Node { name: String },
    Waypoint { namespace: String, name: String },
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node { name } => write!(f, "node/{name}"),
            Self::Waypoint { namespace, name } => write!(f, "waypoint/{namespace}/{name}"),
        }
    }
}

pub struct PushState {
    pub version: u64,
    /// When this configuration was compiled: convergence is measured from here.
    pub created: Instant,
    pub shared: Arc<EncodedSet>,
    authorizations: BTreeMap<String, EncodedResource>,
    /// Authorization names referenced by each node's workloads.
    node_authorizations: HashMap<String, BTreeSet<String>>,
    waypoints: BTreeMap<WaypointKey, Arc<EncodedSet>>,
    /// The last shared-resource delta computed from an older set (most subscribers ask for the
    /// same one), keyed by that set's address.
    delta_cache: Mutex<Option<(usize, Arc<SharedDelta>)>>,
}

impl PushState {
    pub fn new(compiled: &Compiled, previous: Option<&PushState>) -> Self {
        let shared = EncodedSet::from_resources(&compiled.shared);
        // Keep the previous Arc when nothing changed: subscribers then skip the diff entirely.
        let shared = match previous {
            Some(p) if same_resources(&p.shared, &shared) => p.shared.clone(),
            _ => Arc::new(shared),
        };
        let mut node_authorizations: HashMap<String, BTreeSet<String>> = HashMap::new();
        for resource in &compiled.shared {
            if let Some(Kind::Workload(w)) = &resource.kind {
                node_authorizations.entry(w.node.clone()).or_default().extend(w.authorization_policies.iter().cloned());
            }
        }
        let waypoints = compiled
            .waypoints
            .iter()
            .map(|(key, resources)| {
                let set = EncodedSet::from_resources(resources);
                let set = match previous.and_then(|p| p.waypoints.get(key)) {
                    Some(old) if same_resources(old, &set) => old.clone(),
                    _ => Arc::new(set),
                };
                (key.clone(), set)
            })
            .collect();
        Self {
            version: compiled.version,
            created: Instant::now(),
            shared,
            authorizations: compiled.authorizations.iter().map(|(k, r)| (k.clone(), EncodedResource::new(r))).collect(),
            node_authorizations,
            waypoints,
            delta_cache: Mutex::new(None),
        }
    }

    /// The resources a subscriber receives: a shared set plus its own few extras.
    pub fn view(&self, scope: &Scope) -> super::view::View {
        match scope {
            Scope::Node { name } => {
                let extras = self
                    .node_authorizations
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|n| {
                        Some(((ResourceType::Authorization, n.clone()), self.authorizations.get(n)?.clone()))
                    })
                    .collect();
                super::view::View { shared: self.shared.clone(), extras }
            }
            Scope::Waypoint { namespace, name } => {
                let key = WaypointKey { namespace: namespace.clone(), name: name.clone() };
                let shared = self.waypoints.get(&key).cloned().unwrap_or_default();
                super::view::View { shared, extras: BTreeMap::new() }
            }
        }
    }

    /// The delta from `old` to this state's shared set, computed once for all subscribers that
    /// come from the same `old`.
    pub fn shared_delta(&self, old: &Arc<EncodedSet>, new: &Arc<EncodedSet>) -> Arc<SharedDelta> {
        if !Arc::ptr_eq(new, &self.shared) {
            return Arc::new(SharedDelta::between(old, new)); // a waypoint's set: not cached
        }
        let key = Arc::as_ptr(old) as usize;
        let mut cache = self.delta_cache.lock().expect("delta cache");
        if let Some((cached_key, delta)) = cache.as_ref()
            && *cached_key == key
        {
            return delta.clone();
        }
        let delta = Arc::new(SharedDelta::between(old, new));
        *cache = Some((key, delta.clone()));
        delta
    }

    pub fn resource_count(&self) -> usize {
        self.shared.resources.len() + self.authorizations.len()
    }
}

fn same_resources(a: &EncodedSet, b: &EncodedSet) -> bool {
    a.resources.len() == b.resources.len()
        && a.resources.iter().zip(&b.resources).all(|((ka, ra), (kb, rb))| ka == kb && ra.same_as(rb))
}
