//! Typed access to the pinned maps. Each map sits behind its own lock: operations are single
//! syscalls, so contention stays negligible next to the connection work around them.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    os::fd::AsRawFd,
    sync::Mutex,
};

use ambit_ebpf_types::{Counter, Endpoint, Ip, ListenerKey, PodEntry, listener_role, map_names};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, PerCpuArray, SockHash},
};
use serde::Serialize;

use super::CaptureError;

pub(super) struct CaptureMaps {
    pods: Mutex<HashMap<MapData, u64, PodEntry>>,
    pending: HashMap<MapData, u64, Endpoint>,
    orig_dst: Mutex<HashMap<MapData, Endpoint, Endpoint>>,
    in_peers: Mutex<HashMap<MapData, Endpoint, Endpoint>>,
    listeners: Mutex<SockHash<MapData, ListenerKey>>,
    counters: PerCpuArray<MapData, u64>,
}

/// Live entries per map: these should track the number of live connections.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MapSizes {
    pub(crate) pods: usize,
    pub(crate) pending: usize,
    pub(crate) orig_dst: usize,
    pub(crate) inbound_peers: usize,
    pub(crate) listeners: usize,
}

fn map_err(map: &'static str, op: &'static str) -> impl Fn(MapError) -> CaptureError {
    move |source| CaptureError::Map { map, op, source }
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::Map {
        map: name,
        op: "find",
        source: MapError::InvalidName { name: name.into() },
    })?;
    T::try_from(map).map_err(map_err(name, "open"))
}

impl CaptureMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, CaptureError> {
        Ok(Self {
            pods: Mutex::new(take(ebpf, map_names::PODS)?),
            pending: take(ebpf, map_names::PENDING)?,
            orig_dst: Mutex::new(take(ebpf, map_names::ORIG_DST)?),
            in_peers: Mutex::new(take(ebpf, map_names::INBOUND_PEERS)?),
            listeners: Mutex::new(take(ebpf, map_names::LISTENERS)?),
            counters: take(ebpf, map_names::COUNTERS)?,
        })
    }

    pub(super) fn insert_pod(&self, netns_cookie: u64, ip: Ipv4Addr) -> Result<(), CaptureError> {
        let entry = PodEntry { ip4: u32::from_ne_bytes(ip.octets()), flags: 0 };
        self.pods.lock().expect("pods map").insert(netns_cookie, entry, 0).map_err(map_err(map_names::PODS, "insert"))
    }

    pub(super) fn remove_pod(&self, netns_cookie: u64) -> Result<(), CaptureError> {
        match self.pods.lock().expect("pods map").remove(&netns_cookie) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(map_names::PODS, "remove")(e)),
        }
    }

    pub(super) fn pod_cookies(&self) -> Vec<u64> {
        self.pods.lock().expect("pods map").keys().filter_map(Result::ok).collect()
    }

    pub(super) fn insert_listeners(
        &self,
        ip: Ipv4Addr,
        plaintext: &TcpListener,
        hbone: &TcpListener,
    ) -> Result<(), CaptureError> {
        let mut listeners = self.listeners.lock().expect("listeners map");
        let ip = Ip::from_ip(IpAddr::V4(ip));
        for (role, socket) in [(listener_role::INBOUND_PLAINTEXT, plaintext), (listener_role::HBONE, hbone)] {
            listeners
                .insert(ListenerKey { ip, role }, socket.as_raw_fd(), 0)
                .map_err(map_err(map_names::LISTENERS, "insert"))?;
        }
        Ok(())
    }

    pub(super) fn remove_listeners(&self, ip: Ipv4Addr) -> Result<(), CaptureError> {
        let mut listeners = self.listeners.lock().expect("listeners map");
        let ip = Ip::from_ip(IpAddr::V4(ip));
        for role in [listener_role::INBOUND_PLAINTEXT, listener_role::HBONE] {
            match listeners.remove(&ListenerKey { ip, role }) {
                // Closed sockets leave a SOCKHASH by themselves.
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_names::LISTENERS, "remove")(e)),
            }
        }
        Ok(())
    }

    pub(super) fn take_original_destination(&self, client: SocketAddr) -> Option<SocketAddr> {
        let key = Endpoint::from_socket_addr(client);
        let mut map = self.orig_dst.lock().expect("orig_dst map");
        let orig = map.get(&key, 0).ok()?;
        // sock_ops also removes it when the client socket closes; removing now keeps the map small.
        let _ = map.remove(&key);
        Some(orig.to_socket_addr())
    }

    pub(super) fn insert_inbound_peer(&self, proxy_local: SocketAddr, client: SocketAddr) -> Result<(), CaptureError> {
        self.in_peers
            .lock()
            .expect("in_peers map")
            .insert(Endpoint::from_socket_addr(proxy_local), Endpoint::from_socket_addr(client), 0)
            .map_err(map_err(map_names::INBOUND_PEERS, "insert"))
    }

    pub(super) fn remove_inbound_peer(&self, proxy_local: SocketAddr) {
        let _ = self.in_peers.lock().expect("in_peers map").remove(&Endpoint::from_socket_addr(proxy_local));
    }

    pub(super) fn clear_inbound_peers(&self) -> usize {
        let mut map = self.in_peers.lock().expect("in_peers map");
        let keys: Vec<Endpoint> = map.keys().filter_map(Result::ok).collect();
        for key in &keys {
            let _ = map.remove(key);
        }
        keys.len()
    }

    pub(super) fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(&(counter as u32), 0).map(|per_cpu| per_cpu.iter().sum()).unwrap_or(0)
    }

    pub(super) fn sizes(&self) -> MapSizes {
        MapSizes {
            pods: self.pods.lock().expect("pods map").keys().count(),
            pending: self.pending.keys().count(),
            orig_dst: self.orig_dst.lock().expect("orig_dst map").keys().count(),
            inbound_peers: self.in_peers.lock().expect("in_peers map").keys().count(),
            listeners: self.listeners.lock().expect("listeners map").keys().count(),
        }
    }
}
