//! `cargo xtask bench`: what the mesh data path costs — capture, then an HBONE tunnel (mTLS,
//! HTTP/2 CONNECT) between the node proxies — measured against a direct connection between the
//! same pods in the same run. Single-stream throughput (iperf3) and 64-byte ping-pong round-trip
//! latency (sockperf), pod→pod across nodes and on one node. Every run is bounded in time; nothing
//! leaves the cluster's own network namespaces. The mesh figures count only if the node proxies'
//! connection records show the traffic was carried as the path says: HBONE across nodes; on one
//! node, handed over inside the node proxy (its default) or, with `--same-node hbone`, HBONE too.
//!
//! `ambit-bench [--seconds N] [--rounds R] [--plain | --same-node local|hbone]`: each measurement
//! runs N seconds (default 5), R times (default 3) alternating direct and mesh, and the median is
//! reported. `--plain` runs the node proxies standalone (no control plane, so no identities):
//! captured traffic is relayed as plain TCP, which isolates what capture and the proxy hops cost
//! from what the HBONE tunnel adds. `--same-node` is passed to the node proxies.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ambit_e2e::{ChildGuard, Cluster, Pod, PodOptions};
use anyhow::{Context, bail};

const IPERF_PORT: u16 = 5201;
const SOCKPERF_PORT: u16 = 11111;

struct Options {
    seconds: u64,
    rounds: usize,
    /// Standalone node proxies: plain TCP relay instead of HBONE.
    plain: bool,
    /// The node proxies' `--same-node`: `local` or `hbone`.
    same_node: String,
}

impl Options {
    /// The transport the mesh connections' records must show, and the row's label.
    fn path(&self, topology: &str) -> (&'static str, &'static str) {
        match (self.plain, topology, self.same_node.as_str()) {
            (true, _, _) => ("plaintext", "mesh (plain relay)"),
            (false, "same-node", "local") => ("node_local", "mesh (in-proxy hand-over)"),
            (false, _, _) => ("hbone", "mesh (HBONE, mTLS)"),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Sample {
    gbits: f64,
    p50_us: f64,
    p99_us: f64,
}

const USAGE: &str = "usage: ambit-bench [--seconds N] [--rounds R] [--plain | --same-node local|hbone]";

fn main() -> std::process::ExitCode {
    ambit_e2e::tool::run("ambit-bench", USAGE, bench)
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let options = parse_args(args)?;
    for tool in ["iperf3", "sockperf"] {
        which(tool).with_context(|| {
            format!("{tool} is not installed: `cargo xtask bench` installs it (apt-get install {tool})")
        })?;
    }
    println!(
        "== Ambit data-path benchmark: {}s per measurement, {} rounds, medians ==",
        options.seconds, options.rounds
    );
    let same_node = format!("--same-node={}", options.same_node);
    let cluster = Cluster::builder()
        .nodes(2)
        .proxy_args(&[same_node.as_str()])
        .control_plane(!options.plain)
        .namespace("direct", &[])
        .namespace("mesh", &[("istio.io/dataplane-mode", "ambient")])
        .build()?;
    let mut rows = Vec::new();
    for (topology, server_node) in [("cross-node", 1), ("same-node", 0)] {
        let pods = |ns: &str| -> anyhow::Result<(Pod, Pod)> {
            let client = cluster.add_pod(PodOptions::new(&format!("client-{topology}"), ns).node(0))?;
            let server = cluster.add_pod(PodOptions::new(&format!("server-{topology}"), ns).node(server_node))?;
            Ok((client, server))
        };
        let direct = pods("direct")?;
        let mesh = pods("mesh")?;
        let servers = [&direct.1, &mesh.1].map(start_servers).into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        if !options.plain {
            cluster.wait_converged()?;
        }
        let (mut direct_samples, mut mesh_samples) = (Vec::new(), Vec::new());
        for round in 1..=options.rounds {
            println!("[{topology}] round {round}/{}", options.rounds);
            direct_samples.push(measure(&direct.0, &direct.1, options.seconds)?);
            mesh_samples.push(measure(&mesh.0, &mesh.1, options.seconds)?);
        }
        drop(servers);
        let (transport, label) = options.path(topology);
        require_transport(&cluster, &mesh.0, topology, transport)?;
        rows.push((topology, label, median(&direct_samples), median(&mesh_samples)));
    }
    print_table(&rows);
    cluster.shutdown()?;
    Ok(())
}

/// Fails unless every connection the mesh client made was carried as `transport` says: a figure
/// for a path that fell back to plaintext would be a lie.
fn require_transport(cluster: &Cluster, client: &Pod, topology: &str, transport: &str) -> anyhow::Result<()> {
    let records = cluster.node(client.node_index()).admin_get("/connections")?;
    let mine: Vec<&serde_json::Value> = records
        .as_array()
        .context("/connections is not an array")?
        .iter()
        .filter(|r| r["direction"] == "outbound" && r["pod"]["name"] == client.name())
        .collect();
    if mine.is_empty() {
        bail!("[{topology}] the node proxy recorded no connection from {}: was it captured?", client.name());
    }
    if let Some(other) = mine.iter().find(|r| r["transport"] != transport) {
        bail!("[{topology}] a measured connection was not carried as {transport}: {other}");
    }
    println!("[{topology}] {} measured connections, all carried as {transport}", mine.len());
    Ok(())
}

fn parse_args(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options { seconds: 5, rounds: 3, plain: false, same_node: "local".into() };
    let mut args = args.iter().cloned();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--plain" => options.plain = true,
            "--same-node" => match value()?.as_str() {
                mode @ ("local" | "hbone") => options.same_node = mode.to_owned(),
                other => bail!("--same-node is local or hbone (got {other})"),
            },
            other => bail!("unknown argument {other}; {USAGE}"),
        }
    }
    if !(1..=60).contains(&options.seconds) || !(1..=20).contains(&options.rounds) {
        bail!("--seconds must be 1..=60 and --rounds 1..=20");
    }
    Ok(options)
}

/// iperf3 and sockperf servers in `pod`, listening before this returns.
fn start_servers(pod: &Pod) -> anyhow::Result<[ChildGuard; 2]> {
    let iperf = pod.spawn("iperf3", &["-s", "-p", &IPERF_PORT.to_string()])?;
    let sockperf = pod.spawn("sockperf", &["server", "--tcp", "-i", "0.0.0.0", "-p", &SOCKPERF_PORT.to_string()])?;
    wait_listening(&iperf, IPERF_PORT)?;
    wait_listening(&sockperf, SOCKPERF_PORT)?;
    Ok([iperf, sockperf])
}

/// Waits until `process` has a TCP socket listening on `port` (read from its own network
/// namespace's /proc view).
fn wait_listening(process: &ChildGuard, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let suffix = format!(":{port:04X}");
    let listening = |table: String| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&suffix) && fields[3] == "0A"
        })
    };
    loop {
        // Servers may listen on IPv4 or dual-stack IPv6 sockets.
        let found = ["tcp", "tcp6"].iter().any(|table| {
            listening(std::fs::read_to_string(format!("/proc/{}/net/{table}", process.pid())).unwrap_or_default())
        });
        if found {
            return Ok(());
        }
        if !process.is_running() || Instant::now() >= deadline {
            bail!("the server (pid {}) did not start listening on port {port}; see the pod log", process.pid());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn measure(client: &Pod, server: &Pod, seconds: u64) -> anyhow::Result<Sample> {
    let ip = server.ip().to_string();
    let secs = seconds.to_string();
    let iperf = run(client, "iperf3", &["-c", &ip, "-p", &IPERF_PORT.to_string(), "-t", &secs, "-J"], seconds)?;
    let report: serde_json::Value = serde_json::from_str(&iperf).context("iperf3 -J output")?;
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 reported no throughput: {}", report["error"]))?;
    let sockperf = run(
        client,
        "sockperf",
        &["ping-pong", "--tcp", "-i", &ip, "-p", &SOCKPERF_PORT.to_string(), "-m", "64", "-t", &secs, "--full-rtt"],
        seconds,
    )?;
    Ok(Sample { gbits: bits / 1e9, p50_us: percentile(&sockperf, "50.000")?, p99_us: percentile(&sockperf, "99.000")? })
}

/// Runs a load tool in `pod` for about `seconds`, killed if it overruns; its stdout.
fn run(pod: &Pod, program: &str, args: &[&str], seconds: u64) -> anyhow::Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut spawned = pod.spawn_command(cmd)?;
    let mut stdout = spawned.stdout.take().context("stdout pipe")?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let status = spawned.guard.wait_timeout(Duration::from_secs(seconds + 20))?;
    spawned.guard.kill();
    let out = reader.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(out),
        Some(status) => bail!("{program} {} failed ({status}): {out}", args.join(" ")),
        None => bail!("{program} did not finish within {}s; killed", seconds + 20),
    }
}

fn percentile(sockperf: &str, which: &str) -> anyhow::Result<f64> {
    let marker = format!("percentile {which} =");
    sockperf
        .lines()
        .find_map(|line| line.split_once(&marker).map(|(_, v)| v.trim().parse::<f64>()))
        .with_context(|| format!("no {which} percentile in sockperf output:\n{sockperf}"))?
        .context("sockperf percentile")
}

fn median(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Sample { gbits: pick(|s| s.gbits), p50_us: pick(|s| s.p50_us), p99_us: pick(|s| s.p99_us) }
}

fn print_table(rows: &[(&str, &str, Sample, Sample)]) {
    println!();
    println!("{:<11} {:<25} {:>12} {:>12} {:>12}", "pods", "path", "throughput", "p50 RTT", "p99 RTT");
    for (topology, mesh_label, direct, mesh) in rows {
        println!(
            "{:<11} {:<25} {:>8.2} Gb/s {:>9.1} µs {:>9.1} µs",
            topology, "direct (not enrolled)", direct.gbits, direct.p50_us, direct.p99_us
        );
        println!(
            "{:<11} {:<25} {:>8.2} Gb/s {:>9.1} µs {:>9.1} µs",
            "", mesh_label, mesh.gbits, mesh.p50_us, mesh.p99_us
        );
        println!(
            "{:<11} {:<25} {:>10.0} % {:>+9.1} µs {:>+9.1} µs",
            "",
            "mesh vs direct",
            100.0 * mesh.gbits / direct.gbits,
            mesh.p50_us - direct.p50_us,
            mesh.p99_us - direct.p99_us
        );
    }
    println!("\n(throughput: mesh as a share of direct; latency: round trip added by the mesh)");
}

fn which(program: &str) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file()).then_some(()).context("not on PATH")
}
