//! Connected subscribers, for the admin API and metrics.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::state::Scope;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberInfo {
    pub id: u64,
    pub proxy: Scope,
    pub peer: Option<SocketAddr>,
    pub proxy_version: String,
    pub connected_at_unix_ms: u64,
    /// Last version sent, and the last one the proxy accepted.
    pub sent_version: u64,
    pub acked_version: u64,
    /// The newest configuration version the proxy is known to hold the equivalent of: updates
    /// that change nothing for it are not sent, so this can be ahead of `acked_version`.
    pub in_sync_version: u64,
    pub updates_sent: u64,
    pub nacks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    subscribers: Mutex<BTreeMap<u64, SubscriberInfo>>,
}

impl Registry {
    pub fn add(&self, proxy: Scope, peer: Option<SocketAddr>, proxy_version: String) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let connected_at_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let info = SubscriberInfo {
            id,
            proxy,
            peer,
            proxy_version,
            connected_at_unix_ms,
            sent_version: 0,
            acked_version: 0,
            in_sync_version: 0,
            updates_sent: 0,
            nacks: 0,
            last_nack: None,
        };
        self.subscribers.lock().expect("registry").insert(id, info);
        id
    }

    pub fn update(&self, id: u64, f: impl FnOnce(&mut SubscriberInfo)) {
        if let Some(info) = self.subscribers.lock().expect("registry").get_mut(&id) {
            f(info);
        }
    }

    pub fn remove(&self, id: u64) {
        self.subscribers.lock().expect("registry").remove(&id);
    }

    pub fn list(&self) -> Vec<SubscriberInfo> {
        self.subscribers.lock().expect("registry").values().cloned().collect()
    }

    /// (node proxies, waypoints) connected.
    pub fn counts(&self) -> (usize, usize) {
        let subscribers = self.subscribers.lock().expect("registry");
        let nodes = subscribers.values().filter(|s| matches!(s.proxy, Scope::Node { .. })).count();
        (nodes, subscribers.len() - nodes)
    }
}
