//! Every map, pinned by name so a restarted node proxy adopts them (and so capture keeps failing
//! closed while no proxy runs). Layouts and capacities live in `ambit-ebpf-types`.

use ambit_ebpf_types::{Endpoint, ListenerKey, PodEntry, capacity};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, SockHash},
};

/// netns cookie → enrolled pod.
#[map]
pub(crate) static AMBIT_PODS: HashMap<u64, PodEntry> = HashMap::pinned(capacity::PODS, 0);

/// socket cookie → original destination, from connect until the socket closes.
#[map]
pub(crate) static AMBIT_PENDING: LruHashMap<u64, Endpoint> = LruHashMap::pinned(capacity::PENDING, 0);

/// client endpoint → original destination, for the proxy to read after accept().
#[map]
pub(crate) static AMBIT_ORIG_DST: LruHashMap<Endpoint, Endpoint> = LruHashMap::pinned(capacity::ORIG_DST, 0);

/// proxy's in-pod upstream socket → the real client it relays for.
#[map]
pub(crate) static AMBIT_IN_PEERS: LruHashMap<Endpoint, Endpoint> = LruHashMap::pinned(capacity::INBOUND_PEERS, 0);

/// (pod IP, role) → in-pod listening socket.
#[map]
pub(crate) static AMBIT_LISTENERS: SockHash<ListenerKey> = SockHash::pinned(capacity::LISTENERS, 0);

/// Per-CPU decision counters, indexed by `Counter`.
#[map]
pub(crate) static AMBIT_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(ambit_ebpf_types::COUNTER_SLOTS, 0);
