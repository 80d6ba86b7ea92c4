//! Validated model types. Built only by the `TryFrom` conversions in the
//! `validate` module (every struct is `#[non_exhaustive]`, so code outside this
//! crate cannot assemble one by hand), immutable once built, and dumpable with `Serialize`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{error::ObjectRef, kind::Kind};

mod common;
mod destination_rule;
mod k8s;
mod security;
mod service_entry;
mod virtual_service;

pub use common::{ExportTo, IpBlock, Labels, Percent, Selector, StringMatch, ValueMatch};
pub use destination_rule::*;
pub use k8s::*;
pub use security::*;
pub use service_entry::*;
pub use virtual_service::*;

/// The metadata Ambit keeps for every object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ObjectMeta {
    pub name: String,
    /// `default` when the document gave none; empty for cluster-scoped kinds.
    pub namespace: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
}

/// One validated object of any kind Ambit reads.
#[expect(
    clippy::large_enum_variant,
    reason = "objects live behind an Arc in the store and snapshots; boxing variants would add a second indirection"
)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    ServiceAccount(ServiceAccount),
    Gateway(Gateway),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    ServiceEntry(ServiceEntry),
    AuthorizationPolicy(AuthorizationPolicy),
    PeerAuthentication(PeerAuthentication),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::ServiceAccount(_) => Kind::ServiceAccount,
            Object::Gateway(_) => Kind::Gateway,
            Object::VirtualService(_) => Kind::VirtualService,
            Object::DestinationRule(_) => Kind::DestinationRule,
            Object::ServiceEntry(_) => Kind::ServiceEntry,
            Object::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Object::PeerAuthentication(_) => Kind::PeerAuthentication,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.meta,
            Object::Pod(o) => &o.meta,
            Object::Service(o) => &o.meta,
            Object::EndpointSlice(o) => &o.meta,
            Object::ServiceAccount(o) => &o.meta,
            Object::Gateway(o) => &o.meta,
            Object::VirtualService(o) => &o.meta,
            Object::DestinationRule(o) => &o.meta,
            Object::ServiceEntry(o) => &o.meta,
            Object::AuthorizationPolicy(o) => &o.meta,
            Object::PeerAuthentication(o) => &o.meta,
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        let meta = self.meta();
        ObjectRef::new(self.kind(), meta.namespace.clone(), meta.name.clone())
    }
}
