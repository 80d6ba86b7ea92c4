//! `cargo xtask demo`: a 2-node local cluster with real eBPF capture, a control plane that is also
//! the CA, a few pods, and the traffic between them as the node proxies saw it — tunnelled over
//! HBONE (mTLS with both pods' SPIFFE identities) inside the mesh, plain outside it, and refused
//! once an AuthorizationPolicy says so. Everything it creates is removed when it ends.
//! `--hold` keeps the cluster up until Enter is pressed, to look around.

use std::{
    collections::HashMap,
    io::BufRead,
    time::{Duration, Instant},
};

use ambit_e2e::{Cluster, Node, Pod, PodOptions, ServiceSpec, WaypointOptions};
use anyhow::Context;
use serde_json::Value;

const AMBIENT: (&str, &str) = ("istio.io/dataplane-mode", "ambient");

const USAGE: &str = "usage: ambit-demo [--hold]   (--hold: keep the mesh up until Enter is pressed)";

fn main() -> std::process::ExitCode {
    ambit_e2e::tool::run("ambit-demo", USAGE, run)
}

fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(other) = args.iter().find(|a| *a != "--hold") {
        anyhow::bail!("unknown argument {other}; {USAGE}");
    }
    let hold = args.iter().any(|a| a == "--hold");
    let started = Instant::now();
    println!("== Ambit local demo ==\n");
    println!("Starting a 2-node cluster: network namespaces as nodes and pods, a node proxy per node,");
    println!("eBPF capture programs loaded into this kernel, and a control plane reading a config directory...");
    let cluster = Cluster::builder()
        .nodes(2)
        .control_plane(true)
        .namespace("shop", &[AMBIENT])
        .namespace("legacy", &[])
        .build()?;
    for node in cluster.nodes() {
        println!(
            "  {}: uplink {}, pods {}, node proxy pid {}",
            node.name(),
            node.uplink_ip(),
            node.pod_cidr(),
            node.proxy_pid().map_or("-".into(), |p| p.to_string())
        );
    }
    println!(
        "  control plane pid {}, config in {}",
        cluster.cp().pid().map_or("-".into(), |p| p.to_string()),
        cluster.cp().config_dir().display()
    );
    println!("  namespaces: shop (istio.io/dataplane-mode=ambient), legacy (not enrolled)\n");

    let frontend = cluster.add_pod(PodOptions::new("frontend", "shop").node(0).service_account("frontend"))?;
    let catalog = cluster.add_pod(PodOptions::new("catalog", "shop").node(0).service_account("catalog"))?;
    let cart = cluster.add_pod(PodOptions::new("cart", "shop").node(1).service_account("cart"))?;
    let batch = cluster.add_pod(PodOptions::new("batch", "legacy").node(0).service_account("batch"))?;
    for pod in [&frontend, &catalog, &cart, &batch] {
        println!("  pod {}/{} on {} at {}", pod.namespace(), pod.name(), pod.node_name(), pod.ip());
    }
    let _servers = [&catalog, &cart]
        .map(|pod| pod.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]))
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!("  catalog and cart serve an echo service on :8080\n");

    let mut demo = Demo { cluster: &cluster, step: 0, seen: HashMap::new() };
    let to = |pod: &Pod| format!("{}:8080", pod.ip());
    cluster.wait_converged()?;
    demo.show("shop/frontend → shop/cart:8080, across nodes: one HBONE tunnel, both identities proven", 2, || {
        frontend.run_app(&echo_args(&to(&cart)))
    })?;
    demo.show(
        "shop/frontend → shop/catalog:8080, same node: handed over inside node-0's proxy, same checks",
        2,
        || frontend.run_app(&echo_args(&to(&catalog))),
    )?;
    demo.show("node-0 itself (like a kubelet probe) → shop/cart:8080", 1, || {
        cluster.node(0).run_app(&echo_args(&to(&cart)))
    })?;
    demo.show("legacy/batch (not enrolled) → shop/cart:8080: captured only on arrival", 1, || {
        batch.run_app(&echo_args(&to(&cart)))
    })?;
    println!("Labelling namespace legacy istio.io/dataplane-mode=ambient; batch is enrolled while running...");
    cluster.set_namespace_labels("legacy", &[AMBIENT])?;
    wait_enrolled(cluster.node(0), &batch)?;
    cluster.wait_converged()?;
    demo.show("legacy/batch → shop/cart:8080 again: now tunnelled with batch's own identity", 2, || {
        batch.run_app(&echo_args(&to(&cart)))
    })?;

    println!("An AuthorizationPolicy: only shop's service accounts may reach cart...");
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: cart-shop-only, namespace: shop}\nspec:\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        namespaces: [shop]\n";
    cluster.apply("cart-policy.yaml", policy, &[("AuthorizationPolicy", "shop", "cart-shop-only")])?;
    demo.show("legacy/batch → shop/cart:8080: refused by cart's node proxy", 2, || {
        let output = batch.run_app_output(&echo_args(&to(&cart)), Duration::from_secs(10))?;
        anyhow::ensure!(!output.success(), "the policy should have refused batch: {:?}", output.events);
        Ok(output.events)
    })?;
    demo.show("shop/frontend → shop/cart:8080: still allowed", 2, || frontend.run_app(&echo_args(&to(&cart))))?;

    waypoint_demo(&cluster, &frontend, &mut demo)?;

    println!("A VirtualService with a typo goes into the config directory; the control plane says what is wrong:");
    cluster.cp().write_config(
        "shop-cart.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n      weigth: 100\n",
    )?;
    let rejection = wait_rejection(&cluster)?;
    println!("   {rejection}\n");
    let subscribers = cluster.cp().admin_get("/subscribers")?;
    for s in subscribers.as_array().into_iter().flatten() {
        println!(
            "   subscribed: {} — config version {} sent, {} acknowledged",
            s["proxy"]["name"].as_str().unwrap_or("?"),
            s["sentVersion"],
            s["ackedVersion"]
        );
    }
    println!();

    let stats = cluster.node(0).admin_get("/stats")?;
    println!("eBPF decisions on node-0 (per-CPU counters, summed):");
    for (name, value) in stats["counters"].as_object().context("counters")? {
        if value.as_u64().unwrap_or(0) > 0 {
            println!("   {name:<32} {value}");
        }
    }
    if hold {
        println!("\nThe cluster stays up. Admin API of node-0:");
        println!("   nsenter --net={} curl -s 127.0.0.1:15000/config_dump", cluster.node(0).netns().path().display());
        println!("Press Enter to tear down.");
        let _ = std::io::stdin().lock().lines().next();
    }
    println!("\nTearing down (namespaces, cgroups, bpffs pins, processes)...");
    cluster.shutdown()?;
    println!("Done in {:.1}s.", started.elapsed().as_secs_f64());
    Ok(())
}

/// L7: a waypoint for `shop`, a `web` service bound to it with two versions, and a
/// VirtualService that sends `end-user: jason` to v2 and splits everyone else 80/20.
fn waypoint_demo(cluster: &Cluster, frontend: &Pod, demo: &mut Demo<'_>) -> anyhow::Result<()> {
    println!("A waypoint for shop (a Gateway of class istio-waypoint and its pod, running the waypoint binary)...");
    let waypoint = cluster.add_waypoint(WaypointOptions::new("shop", "waypoint").node(0))?;
    println!(
        "  waypoint shop/waypoint: pod {} on {}, pid {}",
        waypoint.pod().ip(),
        waypoint.pod().node_name(),
        waypoint.pid().map_or("-".into(), |p| p.to_string())
    );
    let mut servers = Vec::new();
    let mut pods = Vec::new();
    for version in ["v1", "v2"] {
        let name = format!("web-{version}");
        let pod = cluster.add_pod(
            PodOptions::new(&name, "shop")
                .node(1)
                .service_account("web")
                .labels(&[("app", "web"), ("version", version)]),
        )?;
        servers.push(pod.spawn_httpapp(&["serve", "--listen", "0.0.0.0:8080", "--name", &name])?);
        pods.push(pod);
    }
    let web = ServiceSpec::new("shop", "web", std::net::Ipv4Addr::new(10, 96, 0, 20), 80)
        .target_port(8080)
        .app_protocol("http")
        .label("istio.io/use-waypoint", "waypoint");
    cluster.add_service(&web, &pods.iter().collect::<Vec<_>>())?;
    println!(
        "  service shop/web at {} (labelled istio.io/use-waypoint=waypoint): web-v1, web-v2 on node-1",
        web.address()
    );
    let routing = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web]\n  http:\n  - name: jason\n    match:\n    - headers:\n        end-user: {exact: jason}\n    route:\n    - destination: {host: web, subset: v2}\n  - name: split\n    route:\n    - destination: {host: web, subset: v1}\n      weight: 80\n    - destination: {host: web, subset: v2}\n      weight: 20\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec:\n  host: web\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    println!("  VirtualService web: end-user: jason → v2, everyone else 80% v1 / 20% v2\n");
    cluster.apply(
        "web-routing.yaml",
        routing,
        &[("VirtualService", "shop", "web"), ("DestinationRule", "shop", "web")],
    )?;
    let url = format!("http://{}/", web.address());
    let authority = web.authority();
    for (title, header) in [
        ("100 HTTP/1.1 requests from shop/frontend to web", None),
        ("100 more with end-user: jason", Some("end-user: jason")),
    ] {
        let mut args = vec!["load", "--url", &url, "--authority", &authority, "--count", "100", "--concurrency", "4"];
        if let Some(header) = header {
            args.extend(["--header", header]);
        }
        demo.step += 1;
        println!("{}. {title}", demo.step);
        let events = frontend.run_httpapp(&args)?;
        let summary = events.iter().find(|e| e["event"] == "summary").context("a load summary")?;
        println!("   answers: {}   served by: {}", summary["statuses"], summary["servedBy"]);
    }
    let records = waypoint.requests(0)?;
    if let Some(r) = records.last() {
        println!(
            "   the waypoint's last access record: {} {} {} → route {:?}, cluster {}, upstream {}, {} {}",
            r["protocol"].as_str().unwrap_or("?"),
            r["method"].as_str().unwrap_or("?"),
            r["authority"].as_str().unwrap_or("?"),
            r["routeName"].as_str().unwrap_or("?"),
            r["cluster"].as_str().unwrap_or("?"),
            r["upstreamHost"].as_str().unwrap_or("?"),
            r["responseCode"],
            r["responseFlags"].as_str().unwrap_or("-"),
        );
        println!("      from {}", r["sourceIdentity"].as_str().unwrap_or("?"));
    }
    println!("   ({} requests recorded by the waypoint)\n", records.len());
    // The node proxies' records of those tunnels (frontend → waypoint, waypoint → web) are
    // written when the pooled connections close; skip past them.
    demo.skip_records()?;
    drop(servers);
    Ok(())
}

fn echo_args(to: &str) -> [&str; 7] {
    ["connect", "--to", to, "--mode", "echo", "--send", "1000"]
}

struct Demo<'a> {
    cluster: &'a Cluster,
    step: usize,
    /// Last connection record id shown, per node.
    seen: HashMap<String, u64>,
}

impl Demo<'_> {
    /// Marks every connection record so far as seen.
    fn skip_records(&mut self) -> anyhow::Result<()> {
        for node in self.cluster.nodes() {
            let after = self.seen.get(node.name()).copied().unwrap_or(0);
            let records = node.admin_get(&format!("/connections?after={after}"))?;
            if let Some(last) = records.as_array().and_then(|r| r.last()) {
                self.seen.insert(node.name().to_owned(), last["id"].as_u64().unwrap_or(after));
            }
        }
        Ok(())
    }

    /// Runs one client, then prints what it saw and the `expected` connection records the node
    /// proxies wrote for it (records are written when a connection closes).
    fn show(
        &mut self,
        title: &str,
        expected: usize,
        client: impl FnOnce() -> anyhow::Result<Vec<Value>>,
    ) -> anyhow::Result<()> {
        self.step += 1;
        println!("{}. {title}", self.step);
        let events = client()?;
        if let Some(connected) = events.iter().find(|e| e["event"] == "connected") {
            println!("   the client's getpeername(): {}", connected["peer"].as_str().unwrap_or("?"));
        }
        if let Some(error) = events.iter().find(|e| e["event"] == "error") {
            println!("   the client saw: {}", error["message"].as_str().unwrap_or("?"));
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut lines = Vec::new();
        while lines.len() < expected && Instant::now() < deadline {
            for node in self.cluster.nodes() {
                let after = self.seen.get(node.name()).copied().unwrap_or(0);
                let records = node.admin_get(&format!("/connections?after={after}"))?;
                for record in records.as_array().into_iter().flatten() {
                    self.seen.insert(node.name().to_owned(), record["id"].as_u64().unwrap_or(after));
                    lines.push(describe(node, record));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for line in lines {
            println!("   {line}");
        }
        println!();
        Ok(())
    }
}

fn describe(node: &Node, r: &Value) -> String {
    let text = |field: &str| r[field].as_str().unwrap_or("?").to_owned();
    let mut line = format!(
        "{} proxy: {:<8} pod {}/{:<8} {} → original destination {}  ({} B out, {} B back, {}, {})",
        node.name(),
        text("direction"),
        r["pod"]["namespace"].as_str().unwrap_or("?"),
        r["pod"]["name"].as_str().unwrap_or("?"),
        text("source"),
        text("originalDestination"),
        r["bytesFromSource"],
        r["bytesToSource"],
        text("transport"),
        text("outcome"),
    );
    if let (Some(from), Some(to)) = (r["sourceIdentity"].as_str(), r["destinationIdentity"].as_str()) {
        line += &format!("\n      identities: {from} → {to}");
    }
    if let Some(error) = r["error"].as_str().filter(|e| !e.is_empty()) {
        line += &format!("\n      why: {error}");
    }
    line
}

fn wait_rejection(cluster: &Cluster) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rejections = cluster.cp().admin_get("/rejections")?;
        if let Some(text) = rejections.get(0).and_then(|r| r["text"].as_str()) {
            return Ok(text.to_owned());
        }
        anyhow::ensure!(Instant::now() < deadline, "the control plane reported no rejection within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_enrolled(node: &Node, pod: &Pod) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dump = node.admin_get("/config_dump")?;
        let enrolled = dump["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["uid"] == pod.uid() && p["enrolled"] == true && p.get("capture").is_some());
        if enrolled {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{} was not enrolled within 5 s", pod.name());
        std::thread::sleep(Duration::from_millis(50));
    }
}
