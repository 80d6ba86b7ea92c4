//! A proxy's view of its configuration: the resources the control plane sent, by type and name.
//! Applying an update is pure and all-or-nothing, so a bad update is NACKed without touching the
//! configuration in force.

use std::{collections::BTreeMap, sync::Arc};

use crate::api::v1::{Resource, ResourceType, Update, resource::Kind};

pub type ResourceKey = (ResourceType, String);

#[derive(Clone, Debug, Default)]
pub struct ResourceSet {
    version: u64,
    resources: BTreeMap<ResourceKey, Arc<Resource>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    #[error("resource {name:?} has no kind (is the control plane newer than this proxy?)")]
    NoKind { name: String },
    #[error("a {kind} resource has an empty name")]
    EmptyName { kind: &'static str },
    #[error("removal of {name:?} names no resource type")]
    UntypedRemoval { name: String },
    #[error("a delta (version {version}) arrived before any full update")]
    DeltaFirst { version: u64 },
    #[error("compressed changes of version {version} are corrupt: {reason}")]
    Corrupt { version: u64, reason: String },
}

/// Largest decompressed `compressed_changes` accepted (a bound against decompression bombs).
const MAX_DECOMPRESSED: u64 = 1024 * 1024 * 1024;

/// Merges `compressed_changes` into the update's own upserts and removals.
fn expand(mut update: Update) -> Result<Update, UpdateError> {
    if update.compressed_changes.is_empty() {
        return Ok(update);
    }
    let corrupt = |reason: String| UpdateError::Corrupt { version: update.version, reason };
    let mut raw = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(update.compressed_changes.as_slice());
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, MAX_DECOMPRESSED + 1), &mut raw)
        .map_err(|e| corrupt(e.to_string()))?;
    if raw.len() as u64 > MAX_DECOMPRESSED {
        return Err(corrupt(format!("more than {MAX_DECOMPRESSED} bytes once decompressed")));
    }
    let more = <Update as prost::Message>::decode(raw.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    update.upserts.extend(more.upserts);
    update.removals.extend(more.removals);
    update.compressed_changes = Vec::new();
    Ok(update)
}

/// The type of a resource, from its kind.
pub fn resource_type(resource: &Resource) -> Option<ResourceType> {
    Some(match resource.kind.as_ref()? {
        Kind::Namespace(_) => ResourceType::Namespace,
        Kind::Workload(_) => ResourceType::Workload,
        Kind::Service(_) => ResourceType::Service,
        Kind::Authorization(_) => ResourceType::Authorization,
        Kind::RouteTable(_) => ResourceType::RouteTable,
        Kind::Cluster(_) => ResourceType::Cluster,
        Kind::HttpAuthorization(_) => ResourceType::HttpAuthorization,
        Kind::Waypoint(_) => ResourceType::Waypoint,
        Kind::BoundWorkload(_) => ResourceType::BoundWorkload,
    })
}

impl ResourceSet {
    /// The version of the last update applied; 0 before the first.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Resource> {
        self.resources.get(&(ty, name.to_owned())).map(|r| &**r)
    }

    /// Resources of one type, ordered by name.
    pub fn of_type(&self, ty: ResourceType) -> impl Iterator<Item = &Resource> {
        let start = (ty, String::new());
        self.resources.range(start..).take_while(move |((t, _), _)| *t == ty).map(|(_, r)| &**r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values().map(|r| &**r)
    }

    /// The configuration after `update`, or why the update is refused (this one is unchanged).
    pub fn apply(&self, update: Update) -> Result<Self, UpdateError> {
        let update = expand(update)?;
        if !update.full && self.version == 0 && self.resources.is_empty() {
            return Err(UpdateError::DeltaFirst { version: update.version });
        }
        let mut resources = if update.full { BTreeMap::new() } else { self.resources.clone() };
        for removal in update.removals {
            let ty = ResourceType::try_from(removal.r#type)
                .ok()
                .filter(|t| *t != ResourceType::Unspecified)
                .ok_or(UpdateError::UntypedRemoval { name: removal.name.clone() })?;
            resources.remove(&(ty, removal.name));
        }
        for resource in update.upserts {
            let ty = resource_type(&resource).ok_or_else(|| UpdateError::NoKind { name: resource.name.clone() })?;
            if resource.name.is_empty() {
                return Err(UpdateError::EmptyName { kind: ty.as_str_name() });
            }
            resources.insert((ty, resource.name.clone()), Arc::new(resource));
        }
        Ok(Self { version: update.version, resources })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::{Namespace, ResourceName};

    fn namespace(name: &str) -> Resource {
        Resource {
            name: name.into(),
            kind: Some(Kind::Namespace(Namespace { name: name.into(), labels: Default::default() })),
        }
    }

    #[test]
    fn full_then_deltas() {
        let full = Update {
            version: 3,
            full: true,
            upserts: vec![namespace("a"), namespace("b")],
            removals: vec![],
            ..Default::default()
        };
        let set = ResourceSet::default().apply(full).unwrap();
        assert_eq!((set.version(), set.len()), (3, 2));
        let delta = Update {
            version: 5,
            full: false,
            upserts: vec![namespace("c")],
            removals: vec![ResourceName { r#type: ResourceType::Namespace as i32, name: "a".into() }],
            ..Default::default()
        };
        let next = set.apply(delta).unwrap();
        let names: Vec<&str> = next.of_type(ResourceType::Namespace).map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(set.len(), 2, "applying never changes the original");
        let again = next
            .apply(Update {
                version: 6,
                full: true,
                upserts: vec![namespace("z")],
                removals: vec![],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(again.len(), 1, "a full update replaces everything");
    }

    #[test]
    fn compressed_changes_are_merged() {
        use std::io::Write;
        let inner = Update { upserts: vec![namespace("b")], ..Default::default() };
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&prost::Message::encode_to_vec(&inner)).unwrap();
        let update = Update {
            version: 1,
            full: true,
            upserts: vec![namespace("a")],
            removals: vec![],
            compressed_changes: encoder.finish().unwrap(),
        };
        let set = ResourceSet::default().apply(update).unwrap();
        assert_eq!(set.len(), 2);
        let garbage = Update { version: 2, full: true, compressed_changes: vec![1, 2, 3], ..Default::default() };
        assert!(matches!(set.apply(garbage), Err(UpdateError::Corrupt { version: 2, .. })));
    }

    #[test]
    fn bad_updates_are_refused_whole() {
        let set = ResourceSet::default()
            .apply(Update {
                version: 1,
                full: true,
                upserts: vec![namespace("a")],
                removals: vec![],
                ..Default::default()
            })
            .unwrap();
        let no_kind = Update {
            version: 2,
            full: false,
            upserts: vec![namespace("b"), Resource { name: "x".into(), kind: None }],
            removals: vec![],
            ..Default::default()
        };
        assert_eq!(set.apply(no_kind).unwrap_err(), UpdateError::NoKind { name: "x".into() });
        let untyped = Update {
            version: 2,
            full: false,
            upserts: vec![],
            removals: vec![ResourceName { r#type: 0, name: "a".into() }],
            ..Default::default()
        };
        assert!(matches!(set.apply(untyped), Err(UpdateError::UntypedRemoval { .. })));
        let first_delta = Update { version: 9, ..Default::default() };
        assert!(matches!(ResourceSet::default().apply(first_delta), Err(UpdateError::DeltaFirst { .. })));
    }
}
