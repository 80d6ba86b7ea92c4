//! The effective configuration at one version: immutable, shared, cheap to clone.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Serialize, Serializer, ser::SerializeStruct};

use crate::config::{
    error::ObjectRef,
    kind::Kind,
    model::{self, Object},
};

/// The valid objects in force, keyed by kind/namespace/name. Cloning copies one `Arc`.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    version: u64,
    objects: BTreeMap<ObjectRef, Arc<Object>>,
}

impl Snapshot {
    pub(super) fn new(version: u64, objects: BTreeMap<ObjectRef, Arc<Object>>) -> Self {
        Self { inner: Arc::new(Inner { version, objects }) }
    }

    /// Increases by one each time the effective configuration changes; 0 before the first.
    pub fn version(&self) -> u64 {
        self.inner.version
    }

    pub fn len(&self) -> usize {
        self.inner.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.objects.is_empty()
    }

    pub fn get(&self, key: &ObjectRef) -> Option<&Object> {
        self.inner.objects.get(key).map(|o| &**o)
    }

    /// The shared object, for callers that keep it beyond this snapshot.
    pub fn get_arc(&self, key: &ObjectRef) -> Option<Arc<Object>> {
        self.inner.objects.get(key).cloned()
    }

    /// Every object, ordered by kind, namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectRef, &Object)> {
        self.inner.objects.iter().map(|(k, v)| (k, &**v))
    }

    /// The objects of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        let start = ObjectRef::new(kind, String::new(), String::new());
        self.inner.objects.range(start..).take_while(move |(k, _)| k.kind == kind).map(|(_, v)| &**v)
    }
}

macro_rules! typed_iter {
    ($($fn_name:ident => $variant:ident),* $(,)?) => {
        impl Snapshot {
            $(
                #[doc = concat!("Every ", stringify!($variant), ", ordered by namespace and name.")]
                pub fn $fn_name(&self) -> impl Iterator<Item = &model::$variant> {
                    self.of_kind(Kind::$variant).filter_map(|o| match o {
                        Object::$variant(x) => Some(x),
                        _ => None,
                    })
                }
            )*
        }
    };
}

typed_iter!(
    namespaces => Namespace,
    pods => Pod,
    services => Service,
    endpoint_slices => EndpointSlice,
    service_accounts => ServiceAccount,
    gateways => Gateway,
    virtual_services => VirtualService,
    destination_rules => DestinationRule,
    service_entries => ServiceEntry,
    authorization_policies => AuthorizationPolicy,
    peer_authentications => PeerAuthentication,
);

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Snapshot", 2)?;
        s.serialize_field("version", &self.inner.version)?;
        let objects: Vec<&Object> = self.inner.objects.values().map(|o| &**o).collect();
        s.serialize_field("objects", &objects)?;
        s.end()
    }
}
