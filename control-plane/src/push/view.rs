//! A subscriber's view of the configuration and the updates that move it from one view to the
//! next, assembled from pre-encoded resources.

use std::{collections::BTreeMap, sync::Arc};

use ambit_common::api::v1::ResourceName;
use bytes::{BufMut, Bytes, BytesMut};
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint},
};

use super::state::{EncodedResource, EncodedSet, ResourceKey};

/// `Update` field numbers (discovery.proto).
const VERSION: u32 = 1;
const FULL: u32 = 2;
const UPSERTS: u32 = 3;
const REMOVALS: u32 = 4;
const COMPRESSED_CHANGES: u32 = 5;

/// Blocks of changes larger than this are sent zlib-compressed (`Update.compressed_changes`).
const COMPRESS_ABOVE: usize = 64 * 1024;

/// What one subscriber has: a set shared with others, plus its own extras.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub shared: Arc<EncodedSet>,
    pub extras: BTreeMap<ResourceKey, EncodedResource>,
}

/// Changes between two shared sets, already encoded as `Update` fields.
#[derive(Debug, Default)]
pub struct SharedDelta {
    pub block: Bytes,
    pub count: usize,
}

impl SharedDelta {
    pub fn between(old: &EncodedSet, new: &EncodedSet) -> Self {
        let mut block = BytesMut::new();
        let count = diff_into(&mut block, &old.resources, &new.resources);
        Self { block: compress_if_large(block.freeze()), count }
    }
}

/// `block` (encoded Update fields) as is when small, else as one compressed-changes field:
/// compressed once here, sent to every subscriber that needs it.
pub fn compress_if_large(block: Bytes) -> Bytes {
    if block.len() <= COMPRESS_ABOVE {
        return block;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::with_capacity(block.len() / 4), flate2::Compression::fast());
    let compressed = std::io::Write::write_all(&mut encoder, &block).and_then(|()| encoder.finish());
    let Ok(compressed) = compressed else { return block };
    let mut field = BytesMut::with_capacity(compressed.len() + 16);
    encode_key(COMPRESSED_CHANGES, WireType::LengthDelimited, &mut field);
    encode_varint(compressed.len() as u64, &mut field);
    field.put_slice(&compressed);
    field.freeze()
}

/// An `Update` message, encoded, in chunks (the big shared chunk is never copied to build it).
#[derive(Debug)]
pub struct EncodedUpdate {
    pub chunks: Vec<Bytes>,
    pub full: bool,
    pub version: u64,
    /// Resources upserted or removed: zero for a delta means there is nothing to send.
    pub changes: usize,
}

impl EncodedUpdate {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything in `view`.
pub fn full_update(version: u64, view: &View) -> EncodedUpdate {
    let mut own = header(version, true);
    for resource in view.extras.values() {
        put_upsert(&mut own, &resource.bytes);
    }
    let changes = view.shared.resources.len() + view.extras.len();
    EncodedUpdate { chunks: vec![own.freeze(), view.shared.full_block()], full: true, version, changes }
}

/// What changed from `old` to `new`; `shared` is the (cached) delta of their shared sets.
pub fn delta_update(version: u64, old: &View, new: &View, shared: &SharedDelta) -> EncodedUpdate {
    let mut own = header(version, false);
    let changes = shared.count + diff_into(&mut own, &old.extras, &new.extras);
    EncodedUpdate { chunks: vec![own.freeze(), shared.block.clone()], full: false, version, changes }
}

fn header(version: u64, full: bool) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    encode_key(VERSION, WireType::Varint, &mut buf);
    encode_varint(version, &mut buf);
    if full {
        encode_key(FULL, WireType::Varint, &mut buf);
        encode_varint(1, &mut buf);
    }
    buf
}

pub fn put_upsert(buf: &mut BytesMut, resource: &[u8]) {
    encode_key(UPSERTS, WireType::LengthDelimited, buf);
    encode_varint(resource.len() as u64, buf);
    buf.put_slice(resource);
}

fn put_removal(buf: &mut BytesMut, key: &ResourceKey) {
    let removal = ResourceName { r#type: key.0 as i32, name: key.1.clone() };
    encode_key(REMOVALS, WireType::LengthDelimited, buf);
    encode_varint(removal.encoded_len() as u64, buf);
    removal.encode_raw(buf);
}

/// Appends upserts and removals turning `old` into `new`; returns how many.
fn diff_into(
    buf: &mut BytesMut,
    old: &BTreeMap<ResourceKey, EncodedResource>,
    new: &BTreeMap<ResourceKey, EncodedResource>,
) -> usize {
    let mut changes = 0;
    let (mut old_iter, mut new_iter) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (old_iter.peek(), new_iter.peek()) {
            (None, None) => return changes,
            (Some((k, _)), None) => {
                put_removal(buf, k);
                old_iter.next();
            }
            (None, Some((_, r))) => {
                put_upsert(buf, &r.bytes);
                new_iter.next();
            }
            (Some((ko, ro)), Some((kn, rn))) => match ko.cmp(kn) {
                std::cmp::Ordering::Less => {
                    put_removal(buf, ko);
                    old_iter.next();
                }
                std::cmp::Ordering::Greater => {
                    put_upsert(buf, &rn.bytes);
                    new_iter.next();
                }
                std::cmp::Ordering::Equal => {
                    let unchanged = ro.same_as(rn);
                    if !unchanged {
                        put_upsert(buf, &rn.bytes);
                    }
                    old_iter.next();
                    new_iter.next();
                    if unchanged {
                        continue;
                    }
                }
            },
        }
        changes += 1;
    }
}
