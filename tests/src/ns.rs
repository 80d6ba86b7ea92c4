//! Named network namespaces (`ip netns`, living at `/run/netns/<name>`) and per-namespace sysctls.

use std::path::{Path, PathBuf};

use ambit_common::netns::Netns;
use anyhow::{Context, bail};

use crate::cmd;

/// Where `ip netns` keeps namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// `ip netns add name`, refusing a name that already exists (it would not be ours).
pub fn add(name: &str) -> anyhow::Result<()> {
    if exists(name) {
        bail!("network namespace {name} already exists; refusing to reuse a namespace this run did not create");
    }
    cmd::ip(&["netns", "add", name])
}

/// `ip netns del name`; a namespace that is already gone is fine.
pub fn delete(name: &str) -> anyhow::Result<()> {
    if !exists(name) {
        return Ok(());
    }
    cmd::ip(&["netns", "del", name])
}

pub fn open(name: &str) -> anyhow::Result<Netns> {
    Netns::open(&path(name)).with_context(|| format!("opening network namespace {name}"))
}

/// Writes a sysctl under `/proc/sys/` (e.g. `net/ipv4/ip_forward`) inside `netns`: `/proc/sys/net`
/// shows the namespace of the thread that opens it.
pub fn sysctl(netns: &Netns, key: &str, value: &str) -> anyhow::Result<()> {
    let file = Path::new("/proc/sys").join(key);
    netns
        .run(|| std::fs::write(&file, value))
        .with_context(|| format!("setting {key}={value} in {}", netns.path().display()))
}
