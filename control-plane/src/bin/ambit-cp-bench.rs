//! `cargo xtask bench` (control-plane part): a synthetic cluster — by default 1 000 nodes,
//! 50 000 pods and 5 000 services — read, validated, compiled and pushed over real gRPC (HTTP/2
//! on loopback) to 1 000 in-process node-proxy subscribers. Reports parse and compile time,
//! memory, the time for every subscriber to receive a full snapshot, and the time for one pod
//! change to reach all of them.
//!
//! Subscribers receive every update in full over the wire but do not decode it: 1 000 decodes
//! on this machine's 2 cores would measure the subscribers, which in a real cluster run on 1 000
//! different nodes. What one node proxy spends decoding and applying a full snapshot is measured
//! and reported separately.
//!
//! `ambit-cp-bench [--nodes N] [--pods N] [--services N] [--subscribers N]`

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ambit_common::{
    api::v1::{Hello, SubscribeRequest, Update, hello, subscribe_request},
    config::{ConfigStore, parse_documents},
    discovery::ResourceSet,
};
use ambit_control_plane::{
    compile::{MeshConfig, compile},
    metrics::Metrics,
    push::{DiscoveryService, SUBSCRIBE_PATH, Subscriptions, state::PushState},
};
use anyhow::{Context, bail};
use bytes::{Buf, Bytes};
use prost::Message;
use tokio::sync::watch;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Endpoint, Server, server::TcpIncoming},
};

struct Scale {
    nodes: usize,
    pods: usize,
    services: usize,
    subscribers: usize,
}

fn main() -> anyhow::Result<()> {
    let scale = parse_args()?;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(scale))
}

async fn run(scale: Scale) -> anyhow::Result<()> {
    println!(
        "== Ambit control-plane benchmark: {} nodes, {} pods, {} services, {} subscribers ==",
        scale.nodes, scale.pods, scale.services, scale.subscribers
    );
    let rss_start = rss_mib();
    let (yaml, started) = (cluster_yaml(&scale, None), Instant::now());
    let reading = parse_documents(&yaml, "synthetic");
    let parse = started.elapsed();
    if !reading.errors.is_empty() {
        bail!("the synthetic cluster has errors: {}", reading.errors[0]);
    }
    let objects = reading.objects.len();
    let mut store = ConfigStore::new();
    let started = Instant::now();
    let snapshot = store.apply(reading);
    let apply = started.elapsed();
    let mesh = MeshConfig::default();
    let started = Instant::now();
    let compiled = compile(&snapshot, &mesh);
    let compile_time = started.elapsed();
    let started = Instant::now();
    let state = PushState::new(&compiled, None);
    let encode = started.elapsed();
    let started = Instant::now();
    let full_bytes: usize = state.shared.full_block().len();
    let compress = started.elapsed();
    drop(yaml);
    let rss_config = rss_mib();

    let metrics = Arc::new(Metrics::default());
    let (state_tx, state_rx) = watch::channel(Arc::new(state));
    let subscriptions = Arc::new(Subscriptions::new(state_rx, metrics));
    let addr = serve(subscriptions.clone())?;
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    for i in 0..scale.subscribers {
        tokio::spawn(subscriber(addr, format!("node-{}", i % scale.nodes), progress.clone()));
    }
    progress.wait_for(scale.subscribers as u64, compiled.version, Duration::from_secs(300)).await?;
    let full_push = started.elapsed();
    let rss_push = rss_mib();

    // One pod changes (a label): what a Kubernetes watch event produces.
    let started = Instant::now();
    let changed = parse_documents(&cluster_yaml(&scale, Some(0)), "synthetic");
    let reparse = started.elapsed();
    let started = Instant::now();
    let snapshot = store.apply(changed);
    let compiled = compile(&snapshot, &mesh);
    let previous = state_tx.borrow().clone();
    state_tx.send_replace(Arc::new(PushState::new(&compiled, Some(&previous))));
    progress.wait_for(scale.subscribers as u64, compiled.version, Duration::from_secs(120)).await?;
    let one_change = started.elapsed();

    // What one node proxy does with a full snapshot: decode it and build its resource set.
    let update = Update { version: 1, full: true, ..Default::default() };
    let mut bytes = update.encode_to_vec();
    bytes.extend_from_slice(&previous.shared.full_block());
    let started = Instant::now();
    let decoded = Update::decode(bytes.as_slice())?;
    let set = ResourceSet::default().apply(decoded)?;
    let decode_apply = started.elapsed();

    let mut report = String::new();
    let ms = |d: Duration| format!("{:>9.1} ms", d.as_secs_f64() * 1e3);
    let _ = writeln!(
        report,
        "\n{} config objects -> {} resources per node proxy ({:.1} MiB per full snapshot, compressed)",
        objects,
        set.len(),
        full_bytes as f64 / 1048576.0
    );
    let _ = writeln!(report, "parse (YAML → model, once)            {}", ms(parse));
    let _ = writeln!(report, "store apply (validate, cross-check)   {}", ms(apply));
    let _ = writeln!(report, "compile (node proxies + waypoints)   {}", ms(compile_time));
    let _ = writeln!(report, "encode resources (once for all)      {}", ms(encode));
    let _ = writeln!(report, "compress the full snapshot (once)    {}", ms(compress));
    let _ = writeln!(
        report,
        "full snapshot to all {} subscribers {}   (target: < 5 000 ms)",
        scale.subscribers,
        ms(full_push)
    );
    let _ = writeln!(
        report,
        "one pod change to all subscribers    {}   (target: < 1 000 ms; store+compile+encode+push)",
        ms(one_change)
    );
    let _ = writeln!(report, "  (re-reading the whole synthetic YAML for it, not counted: {})", ms(reparse).trim());
    let _ = writeln!(report, "one node proxy: decode + apply full   {}", ms(decode_apply));
    let _ = writeln!(
        report,
        "memory (RSS): start {rss_start} MiB, config compiled {rss_config} MiB, after full push {rss_push} MiB, peak {} MiB",
        peak_rss_mib()
    );
    print!("{report}");
    subscriptions.close_all();
    Ok(())
}

fn parse_args() -> anyhow::Result<Scale> {
    let mut scale = Scale { nodes: 1000, pods: 50_000, services: 5_000, subscribers: 1000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value: usize = args.next().with_context(|| format!("{arg} needs a value"))?.parse().context(arg.clone())?;
        match arg.as_str() {
            "--nodes" => scale.nodes = value,
            "--pods" => scale.pods = value,
            "--services" => scale.services = value,
            "--subscribers" => scale.subscribers = value,
            other => bail!(
                "unknown argument {other}; usage: ambit-cp-bench [--nodes N] [--pods N] [--services N] [--subscribers N]"
            ),
        }
    }
    if scale.nodes == 0 || scale.services == 0 || scale.pods < scale.services {
        bail!("need at least one node and service, and at least as many pods as services");
    }
    Ok(scale)
}

/// 100 namespaces (half enrolled), `services` services each selecting `pods / services` pods
/// spread over the nodes, with EndpointSlices, and one AuthorizationPolicy per namespace.
/// `changed` opts that pod out of the mesh (a label change every node proxy must hear of).
fn cluster_yaml(scale: &Scale, changed: Option<usize>) -> String {
    let namespaces = 100.min(scale.services);
    let per_service = scale.pods / scale.services;
    let mut out = String::with_capacity(scale.pods * 400);
    for n in 0..namespaces {
        let mode = if n % 2 == 0 { "ambient" } else { "none" };
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{n}, labels: {{istio.io/dataplane-mode: {mode}}}}}\n"
        );
        let _ = write!(
            out,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: allow-ns, namespace: ns-{n}}}\nspec:\n  action: ALLOW\n  rules:\n  - from: [{{source: {{namespaces: [ns-{n}]}}}}]\n"
        );
    }
    for s in 0..scale.services {
        let ns = s % namespaces;
        let vip = 0x0a60_0000u32 + s as u32;
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}, namespace: ns-{ns}}}\nspec:\n  clusterIP: {}\n  selector: {{app: svc-{s}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n",
            ip(vip)
        );
        let mut endpoints = String::new();
        for k in 0..per_service {
            let p = s * per_service + k;
            let pod_ip = ip(0x0b00_0000 + p as u32);
            let extra = if changed == Some(p) { ", istio.io/dataplane-mode: none" } else { "" };
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{s}-{k}, namespace: ns-{ns}, uid: pod-{p}, labels: {{app: svc-{s}, version: v1{extra}}}}}\nspec: {{nodeName: node-{}, serviceAccountName: svc-{s}}}\nstatus: {{phase: Running, podIP: {pod_ip}}}\n",
                p % scale.nodes
            );
            let _ = writeln!(
                endpoints,
                "  - {{addresses: [{pod_ip}], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: svc-{s}-{k}, namespace: ns-{ns}, uid: pod-{p}}}}}"
            );
        }
        let _ = write!(
            out,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{s}-1, namespace: ns-{ns}, labels: {{kubernetes.io/service-name: svc-{s}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{endpoints}"
        );
    }
    out
}

fn ip(n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(n)
}

fn serve(subscriptions: Arc<Subscriptions>) -> anyhow::Result<SocketAddr> {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?.with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let server = Server::builder()
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
        .serve_with_incoming(DiscoveryService::new(subscriptions), incoming);
    tokio::spawn(server);
    Ok(addr)
}

/// Highest version each subscriber has received, counted per version.
#[derive(Default)]
struct Progress {
    received: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    changed: tokio::sync::Notify,
    bytes: AtomicU64,
}

impl Progress {
    fn record(&self, version: u64, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        *self.received.lock().expect("progress").entry(version).or_default() += 1;
        self.changed.notify_waiters();
    }

    async fn wait_for(&self, count: u64, version: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            let have = self.received.lock().expect("progress").get(&version).copied().unwrap_or(0);
            if have >= count {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("only {have} of {count} subscribers received version {version} within {limit:?}");
            }
        }
    }
}

/// A node-proxy subscriber that receives whole updates (no protobuf decode: see the module doc)
/// and ACKs them, reading the version from the message's first field. Like a real subscriber it
/// reconnects after errors (a thousand simultaneous connects overflow the listen backlog).
async fn subscriber(addr: SocketAddr, node: String, progress: Arc<Progress>) {
    for attempt in 1..=30u64 {
        match session(addr, &node, &progress).await {
            Ok(()) => return,
            Err(e) if attempt == 30 => eprintln!("subscriber {node} gave up: {e:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20 * attempt)).await,
        }
    }
}

async fn session(addr: SocketAddr, node: &str, progress: &Progress) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    grpc.ready().await?;
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    let hello = Hello { proxy: Some(hello::Proxy::Node(node.to_owned())), proxy_version: "bench".into() };
    requests.send(SubscribeRequest { message: Some(subscribe_request::Message::Hello(hello)) }).await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(SUBSCRIBE_PATH);
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
    let mut updates = grpc.streaming(request, path, RawCodec).await?.into_inner();
    while let Some(raw) = updates.message().await? {
        let version = leading_version(&raw);
        progress.record(version, raw.len());
        let ack = ambit_common::api::v1::Ack { version, error: String::new() };
        requests.send(SubscribeRequest { message: Some(subscribe_request::Message::Ack(ack)) }).await?;
    }
    Ok(())
}

/// `Update.version` (field 1) of an encoded Update: the control plane writes it first.
fn leading_version(raw: &Bytes) -> u64 {
    let mut buf = raw.clone();
    match prost::encoding::decode_key(&mut buf) {
        Ok((1, prost::encoding::WireType::Varint)) => prost::encoding::decode_varint(&mut buf).unwrap_or(0),
        _ => 0,
    }
}

#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = SubscribeRequest;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        *self
    }
    fn decoder(&mut self) -> RawCodec {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = SubscribeRequest;
    type Error = Status;
    fn encode(&mut self, item: SubscribeRequest, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn rss_mib() -> u64 {
    status_kib("VmRSS:") / 1024
}

fn peak_rss_mib() -> u64 {
    status_kib("VmHWM:") / 1024
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

/// 1 000 subscribers hold 2 000 sockets: make sure the soft limit allows it.
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls with a valid out-pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
