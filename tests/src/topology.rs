//! The network wiring: a fabric namespace with a bridge, nodes hanging off it by veth, pods hanging
//! off their node by veth with /32 addresses, a link-local gateway and proxy-ARP.

use std::net::Ipv4Addr;

use ambit_common::netns::Netns;
use anyhow::Context;

use crate::{cmd::ip_in, ns, run::Run};

/// The bridge in the fabric namespace.
const BRIDGE: &str = "br0";
/// The gateway every pod routes through: on each node's `lo`, answered by proxy-ARP.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// A node's interface to the fabric.
pub const NODE_UPLINK: &str = "eth0";

/// Node `index`'s address on the fabric: `172.30.0.<index+1>`.
pub fn uplink_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, octet(index + 1))
}

/// Node `index`'s pod CIDR: `10.<index+1>.0.0/24`.
pub fn pod_cidr(index: usize) -> String {
    format!("10.{}.0.0/24", index + 1)
}

/// Pod `k` (0-based) of node `index`: `10.<index+1>.0.<k+2>`.
pub fn pod_ip(index: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, octet(index + 1), 0, octet(k + 2))
}

fn octet(n: usize) -> u8 {
    u8::try_from(n).expect("address octet out of range (checked by the builder)")
}

fn lo_up(name: &str) -> anyhow::Result<()> {
    ip_in(name, &["link", "set", "lo", "up"])
}

/// The fabric namespace with its bridge; returns (name, handle).
pub fn create_fabric(run: &Run) -> anyhow::Result<(String, Netns)> {
    let netns = run.create_netns("fabric")?;
    let name = run.netns_name("fabric");
    lo_up(&name)?;
    ip_in(&name, &["link", "add", BRIDGE, "type", "bridge"])?;
    ip_in(&name, &["link", "set", BRIDGE, "up"])?;
    Ok((name, netns))
}

/// Gives the fabric's bridge an address (for a process in the fabric namespace, such as the
/// control plane, that nodes reach over their uplinks).
pub fn add_fabric_address(fabric: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    ip_in(fabric, &["addr", "add", &format!("{ip}/24"), "dev", BRIDGE])
}

/// Node `index`'s namespace, wired to the fabric; returns (name, handle).
pub fn create_node(run: &Run, fabric: &str, index: usize, node_name: &str) -> anyhow::Result<(String, Netns)> {
    let netns = run.create_netns(node_name)?;
    let name = run.netns_name(node_name);
    lo_up(&name)?;
    let fabric_side = format!("n{index}");
    crate::cmd::ip(&[
        "link",
        "add",
        &fabric_side,
        "netns",
        fabric,
        "type",
        "veth",
        "peer",
        "name",
        NODE_UPLINK,
        "netns",
        &name,
    ])?;
    ip_in(fabric, &["link", "set", &fabric_side, "master", BRIDGE, "up"])?;
    ip_in(&name, &["addr", "add", &format!("{}/24", uplink_ip(index)), "dev", NODE_UPLINK])?;
    ip_in(&name, &["link", "set", NODE_UPLINK, "up"])?;
    ip_in(&name, &["addr", "add", &format!("{POD_GATEWAY}/32"), "dev", "lo"])?;
    ns::sysctl(&netns, "net/ipv4/ip_forward", "1")?;
    Ok((name, netns))
}

/// Routes each node's pod CIDR via its uplink IP on every other node.
pub fn route_between_nodes(node_netns: &[String]) -> anyhow::Result<()> {
    for (i, name) in node_netns.iter().enumerate() {
        for j in (0..node_netns.len()).filter(|&j| j != i) {
            let via = uplink_ip(j).to_string();
            ip_in(name, &["route", "add", &pod_cidr(j), "via", &via, "dev", NODE_UPLINK])?;
        }
    }
    Ok(())
}

/// Routes each node's pod CIDR via its uplink IP in the fabric namespace, so that processes
/// there (the control plane) can answer pods that talk to them directly, as a waypoint does.
pub fn route_pods_from_fabric(fabric: &str, nodes: usize) -> anyhow::Result<()> {
    for j in 0..nodes {
        ip_in(fabric, &["route", "add", &pod_cidr(j), "via", &uplink_ip(j).to_string(), "dev", BRIDGE])?;
    }
    Ok(())
}

/// What a pod's wiring needs.
pub struct PodLink<'a> {
    pub node_netns: &'a str,
    pub node: &'a Netns,
    pub pod_netns: &'a str,
    /// The node-side veth name (unique within the node).
    pub veth: &'a str,
    pub ip: Ipv4Addr,
}

/// A veth pair made directly in both namespaces (pod side `eth0`), the pod's /32 address and
/// routes via the link-local gateway, proxy-ARP and a /32 route on the node.
pub fn wire_pod(link: &PodLink<'_>) -> anyhow::Result<()> {
    let (node, pod, veth) = (link.node_netns, link.pod_netns, link.veth);
    crate::cmd::ip(&["link", "add", veth, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", pod])?;
    lo_up(pod)?;
    ip_in(pod, &["addr", "add", &format!("{}/32", link.ip), "dev", "eth0"])?;
    ip_in(pod, &["link", "set", "eth0", "up"])?;
    let gateway = POD_GATEWAY.to_string();
    ip_in(pod, &["route", "add", &gateway, "dev", "eth0", "scope", "link"])?;
    ip_in(pod, &["route", "add", "default", "via", &gateway, "dev", "eth0"])?;
    ip_in(node, &["link", "set", veth, "up"])?;
    ns::sysctl(link.node, &format!("net/ipv4/conf/{veth}/proxy_arp"), "1")
        .with_context(|| format!("enabling proxy-ARP on {veth}"))?;
    ip_in(node, &["route", "add", &format!("{}/32", link.ip), "dev", veth])
}

/// Deletes the node side of a pod's veth pair (the pair and the /32 route go with it).
pub fn unwire_pod(node_netns: &str, veth: &str) -> anyhow::Result<()> {
    ip_in(node_netns, &["link", "del", veth])
}
