//! The benchmark's cluster: four namespaces (not enrolled; enrolled; enrolled and bound to
//! Ambit's waypoint; enrolled and bound to an Envoy waypoint), a client (node 0) and a server
//! (node 1) in each, the waypoint, the Envoy waypoint and a plain Envoy pod on node 0 with the
//! clients, services and routes; and one measurement of a path.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ambit_common::identity::{DEFAULT_TRUST_DOMAIN, SpiffeId, generate_csr, testing::TestCa};
use anyhow::{Context, bail};

use super::{
    Options, Path, Protocol,
    cpu::{Machine, PerRequest, Usage},
    envoy::{self, Envoy, Role, WaypointRole},
    load::{self, Mode, Sample, Target},
    verify::{self, Counters},
};
use crate::{ChildGuard, Cluster, Pod, PodOptions, ServiceSpec, Waypoint, WaypointOptions, config};

pub(super) const DIRECT: &str = "bench-direct";
pub(super) const MESH: &str = "bench-mesh";
pub(super) const WP: &str = "bench-wp";
pub(super) const WAYPOINT: &str = "waypoint";
/// The namespace bound to Envoy as its waypoint, and that waypoint's name (and service account).
pub(super) const EWP: &str = "bench-ewp";
pub(super) const ENVOY_WAYPOINT: &str = "envoy-waypoint";
/// How long the Envoy waypoint's certificate is valid: longer than any run.
const ENVOY_WAYPOINT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Clients, the waypoint and Envoy on node 0; servers on node 1.
const NODES: usize = 2;
const SERVER_PORT: u16 = 8080;
const REQUEST_PATH: &str = "/bench";
/// The waypoint's services, one per upstream HTTP version (HTTP/1.1, HTTP/2): `appProtocol`
/// `http` makes the waypoint speak HTTP/1.1 to the server, `http2` HTTP/2 — as Envoy's two
/// listeners do. Both have the namespace's server as their one endpoint.
const WP_SERVICES: [(&str, Ipv4Addr, &str); 2] =
    [("echo-h1", Ipv4Addr::new(10, 96, 40, 11), "http"), ("echo-h2", Ipv4Addr::new(10, 96, 40, 12), "http2")];
/// The same two services in the Envoy waypoint's namespace.
const EWP_SERVICES: [(&str, Ipv4Addr, &str); 2] =
    [("echo-h1", Ipv4Addr::new(10, 96, 40, 21), "http"), ("echo-h2", Ipv4Addr::new(10, 96, 40, 22), "http2")];

/// A client on node 0 and a server on node 1, in one namespace.
pub(super) struct Pair {
    pub(super) client: Pod,
    pub(super) server: Pod,
}

/// Worker threads of the two proxies under comparison.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workers {
    /// The waypoint's workers: one per CPU it may run on (its default).
    pub waypoint: usize,
    /// Envoy's `--concurrency` (both Envoys), set to the waypoint's.
    pub envoy: usize,
}

/// Field order is drop order: processes first, the cluster (which removes everything) last.
pub(super) struct Bench {
    options: Options,
    pub(super) envoy: Envoy,
    pub(super) envoy_waypoint: Envoy,
    _servers: Vec<ChildGuard>,
    pub(super) waypoint: Waypoint,
    pub(super) direct: Pair,
    pub(super) mesh: Pair,
    pub(super) wp: Pair,
    pub(super) ewp: Pair,
    pub(super) envoy_pod: Pod,
    pub(super) envoy_waypoint_pod: Pod,
    mesh_service: ServiceSpec,
    wp_services: [ServiceSpec; 2],
    ewp_services: [ServiceSpec; 2],
    workers: Workers,
    pub(super) cluster: Cluster,
}

impl Bench {
    pub(super) fn start(options: &Options) -> anyhow::Result<Self> {
        let ambient = ("istio.io/dataplane-mode", "ambient");
        let cluster = Cluster::builder()
            .nodes(NODES)
            .control_plane(true)
            .namespace(DIRECT, &[])
            .namespace(MESH, &[ambient])
            .namespace(WP, &[ambient, ("istio.io/use-waypoint", WAYPOINT)])
            .namespace(EWP, &[ambient, ("istio.io/use-waypoint", ENVOY_WAYPOINT)])
            .build()?;
        let waypoint = cluster.add_waypoint(WaypointOptions::new(WP, WAYPOINT).node(0))?;
        let envoy_waypoint_pod = add_envoy_waypoint_pod(&cluster)?;
        let pair = |ns: &str, short: &str| -> anyhow::Result<Pair> {
            Ok(Pair {
                client: cluster.add_pod(PodOptions::new(&format!("client-{short}"), ns).node(0))?,
                server: cluster.add_pod(PodOptions::new(&format!("server-{short}"), ns).node(1))?,
            })
        };
        let (direct, mesh, wp) = (pair(DIRECT, "direct")?, pair(MESH, "mesh")?, pair(WP, "wp")?);
        let ewp = pair(EWP, "ewp")?;
        let envoy_pod = cluster.add_pod(PodOptions::new("envoy", DIRECT).node(0))?;
        let servers =
            [&direct, &mesh, &wp, &ewp].map(|p| start_server(&p.server)).into_iter().collect::<Result<_, _>>()?;

        let mesh_service =
            ServiceSpec::new(MESH, "echo", Ipv4Addr::new(10, 96, 40, 1), SERVER_PORT).app_protocol("http");
        let wp_services = WP_SERVICES
            .map(|(name, vip, protocol)| ServiceSpec::new(WP, name, vip, SERVER_PORT).app_protocol(protocol));
        cluster.add_service(&mesh_service, &[&mesh.server])?;
        for service in &wp_services {
            cluster.add_service(service, &[&wp.server])?;
        }
        let ewp_services = EWP_SERVICES
            .map(|(name, vip, protocol)| ServiceSpec::new(EWP, name, vip, SERVER_PORT).app_protocol(protocol));
        for service in &ewp_services {
            cluster.add_service(service, &[&ewp.server])?;
        }
        let routes: Vec<String> = WP_SERVICES.iter().map(|(name, ..)| routes_yaml(name)).collect();
        let objects: Vec<(&str, &str, &str)> =
            WP_SERVICES.iter().map(|(name, ..)| ("VirtualService", WP, *name)).collect();
        cluster.apply("bench-routes.yaml", &routes.join("---\n"), &objects)?;
        let hosts: Vec<String> =
            WP_SERVICES.iter().map(|(name, ..)| format!("{name}.{WP}.svc.cluster.local")).collect();
        verify::wait_waypoint_config(&waypoint, &hosts)?;
        cluster.wait_converged()?;

        let waypoint_pid = waypoint.pid().context("the waypoint is not running")?;
        let workers = verify::waypoint_workers(waypoint_pid)?;
        let upstream = SocketAddr::new(direct.server.ip().into(), SERVER_PORT);
        let envoy = Envoy::start(&options.envoy, &envoy_pod, &Role::Plain { upstream }, workers, cluster.run_dir())?;
        let role = Role::Waypoint(envoy_waypoint_role(&cluster, &ewp.server, &ewp_services)?);
        let envoy_waypoint = Envoy::start(&options.envoy, &envoy_waypoint_pod, &role, workers, cluster.run_dir())?;
        for (what, envoy) in [("Envoy", &envoy), ("the Envoy waypoint", &envoy_waypoint)] {
            let running = verify::envoy_workers(envoy.pid())?;
            if running != envoy.workers() {
                bail!("{what} runs {running} worker threads, not the {} it was given", envoy.workers());
            }
        }
        Ok(Self {
            options: options.clone(),
            envoy,
            envoy_waypoint,
            _servers: servers,
            waypoint,
            direct,
            mesh,
            wp,
            ewp,
            envoy_pod,
            envoy_waypoint_pod,
            mesh_service,
            wp_services,
            ewp_services,
            workers: Workers { waypoint: workers, envoy: workers },
            cluster,
        })
    }

    pub(super) fn options(&self) -> &Options {
        &self.options
    }

    pub(super) fn workers(&self) -> Workers {
        self.workers
    }

    pub(super) fn workers_line(&self) -> String {
        format!(
            "worker threads: waypoint {} (one per CPU it may use), both Envoys {} (--concurrency)",
            self.workers.waypoint, self.workers.envoy
        )
    }

    /// Where `path`'s client sends `protocol` requests.
    pub(super) fn target(&self, protocol: Protocol, path: Path) -> Target<'_> {
        let service = |s: &ServiceSpec| (format!("http://{}{REQUEST_PATH}", s.address()), s.authority());
        let (client, (url, authority)) = match path {
            Path::Direct => {
                let addr = format!("{}:{SERVER_PORT}", self.direct.server.ip());
                (&self.direct.client, (format!("http://{addr}{REQUEST_PATH}"), addr))
            }
            Path::Mesh => (&self.mesh.client, service(&self.mesh_service)),
            Path::Waypoint => (&self.wp.client, service(self.wp_service(protocol))),
            Path::Envoy => {
                let addr = format!("{}:{}", self.envoy_pod.ip(), envoy::port(protocol));
                (&self.direct.client, (format!("http://{addr}{REQUEST_PATH}"), addr))
            }
            Path::EnvoyWaypoint => (&self.ewp.client, service(self.ewp_service(protocol))),
        };
        Target { client, url, authority }
    }

    pub(super) fn wp_service(&self, protocol: Protocol) -> &ServiceSpec {
        match protocol {
            Protocol::Http1 => &self.wp_services[0],
            Protocol::H2c => &self.wp_services[1],
        }
    }

    pub(super) fn ewp_service(&self, protocol: Protocol) -> &ServiceSpec {
        match protocol {
            Protocol::Http1 => &self.ewp_services[0],
            Protocol::H2c => &self.ewp_services[1],
        }
    }

    /// Saturation, fixed rate, then one by one, on one path; fails unless the proxy on the path
    /// (and only it) counted every answered request.
    pub(super) fn measure(&self, protocol: Protocol, path: Path) -> anyhow::Result<Sample> {
        let target = self.target(protocol, path);
        let before = Counters::read(self)?;
        let proxy_pid = match path {
            Path::Waypoint => Some(self.waypoint.pid().context("the waypoint is not running")?),
            Path::Envoy => Some(self.envoy.pid()),
            Path::EnvoyWaypoint => Some(self.envoy_waypoint.pid()),
            Path::Direct | Path::Mesh => None,
        };
        let proxy_before = proxy_pid.map(Usage::read).transpose()?;
        let machine_before = Machine::read()?;
        let saturation = load::run(&target, protocol, Mode::Saturation, &self.options)?;
        let machine_busy = Machine::read()?.busy_since(&machine_before);
        let proxy = match (proxy_pid, proxy_before) {
            (Some(pid), Some(before)) => Some(PerRequest::new(Usage::read(pid)?.since(&before), saturation.ok)),
            _ => None,
        };
        let fixed_rate = load::run(&target, protocol, Mode::FixedRate, &self.options)?;
        let one_by_one = load::run(&target, protocol, Mode::OneByOne, &self.options)?;
        let sample = Sample { saturation, fixed_rate, one_by_one, proxy, machine_busy };
        let after = Counters::read(self)?;
        verify::proxied(path, protocol, &before, &after, sample.ok())?;
        Ok(sample)
    }

    /// Sends a few hundred requests on every path (opening connections, filling pools) and checks
    /// that the header route and the default route are taken where they should be.
    pub(super) fn warm_up_and_check_routes(&self, protocol: Protocol) -> anyhow::Result<()> {
        verify::routes(self, protocol)
    }

    /// The node proxies' records of the clients' connections: direct traffic never captured,
    /// mesh and waypoint traffic all in HBONE, the waypoint's all through the waypoint.
    pub(super) fn check_connection_records(&self) -> anyhow::Result<()> {
        verify::connection_records(self)
    }

    pub(super) fn shutdown(self) -> anyhow::Result<()> {
        let Self { envoy, envoy_waypoint, _servers, waypoint, cluster, .. } = self;
        drop((envoy, envoy_waypoint, _servers, waypoint));
        cluster.shutdown()
    }
}

/// The Envoy waypoint's pod, deployed as Istio deploys a waypoint (see [`crate::waypoint`]): its
/// Gateway of class `istio-waypoint`, and a pod labelled with the Gateway's name, never captured,
/// running as the Gateway's service account. Envoy starts in it later.
fn add_envoy_waypoint_pod(cluster: &Cluster) -> anyhow::Result<Pod> {
    let gateway = WaypointOptions::new(EWP, ENVOY_WAYPOINT).gateway_yaml();
    cluster.apply("bench-envoy-waypoint.yaml", &gateway, &[("Gateway", EWP, ENVOY_WAYPOINT)])?;
    let pod = cluster.add_pod(
        PodOptions::new(&format!("{ENVOY_WAYPOINT}-0"), EWP)
            .node(0)
            .service_account(ENVOY_WAYPOINT)
            .labels(&[("gateway.networking.k8s.io/gateway-name", ENVOY_WAYPOINT), ("istio.io/dataplane-mode", "none")]),
    )?;
    cluster.wait_converged()?;
    Ok(pod)
}

/// What Envoy needs to be the waypoint of `EWP`: the services it routes, the server it tunnels
/// to and the identity that server must prove, and its own certificate. Ambit's waypoint gets
/// its certificate from the control plane's CA with its credential; Envoy does not speak that
/// API, so the benchmark issues the same certificate (the Gateway's service account's SPIFFE
/// id, from the mesh's root) and writes it next to the bootstrap.
fn envoy_waypoint_role(cluster: &Cluster, server: &Pod, services: &[ServiceSpec; 2]) -> anyhow::Result<WaypointRole> {
    let ca_dir = cluster.cp().ca_dir();
    let read = |name: &str| {
        std::fs::read_to_string(ca_dir.join(name)).with_context(|| format!("reading the mesh CA's {name}"))
    };
    let ca = TestCa::from_pem(DEFAULT_TRUST_DOMAIN, &read("ca.crt")?, &read("ca.key")?)
        .context("loading the mesh CA's root")?;
    let id = SpiffeId::new(DEFAULT_TRUST_DOMAIN, EWP, ENVOY_WAYPOINT)?;
    let (csr, key) = generate_csr(&id)?;
    let chain = ca.sign_csr_as(&csr, &id, ENVOY_WAYPOINT_CERT_LIFETIME)?;
    let dir = cluster.run_dir();
    let files = [("envoy-waypoint.crt", chain), ("envoy-waypoint.key", key)];
    for (name, pem) in &files {
        std::fs::write(dir.join(name), pem).with_context(|| format!("writing {}", dir.join(name).display()))?;
    }
    let server_identity = SpiffeId::new(DEFAULT_TRUST_DOMAIN, server.namespace(), &server.spec().service_account)?;
    Ok(WaypointRole {
        services: vec![(Protocol::Http1, services[0].authority()), (Protocol::H2c, services[1].authority())],
        server: SocketAddr::new(server.ip().into(), SERVER_PORT),
        server_identity: server_identity.as_str().to_owned(),
        chain: dir.join(files[0].0),
        key: dir.join(files[1].0),
        roots: ca_dir.join("ca.crt"),
    })
}

/// The VirtualService for `service`: the header match first, then the default — the routes
/// Envoy's bootstrap holds.
fn routes_yaml(service: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {service}, namespace: {WP}}}
spec:
  hosts: [{service}]
  http:
  - name: header
    match:
    - headers:
        x-bench-route: {{exact: header}}
    route:
    - destination: {{host: {service}}}
  - name: default
    route:
    - destination: {{host: {service}}}
"
    )
}

/// `ambit-httpapp serve` in `pod`, its per-request events discarded (collecting them would cost
/// the driver more than the server), listening before this returns.
fn start_server(pod: &Pod) -> anyhow::Result<ChildGuard> {
    let mut cmd = Command::new(config::binary("ambit-httpapp")?);
    let listen = format!("0.0.0.0:{SERVER_PORT}");
    cmd.args(["serve", "--listen", &listen, "--name", pod.name()]).stdin(Stdio::null()).stdout(Stdio::null());
    let log = std::fs::OpenOptions::new().create(true).append(true).open(pod.log_path())?;
    cmd.stderr(log);
    let server = pod.spawn_command(cmd)?.guard;
    wait_listening(&server, SERVER_PORT)?;
    Ok(server)
}

/// Waits until `process` has a TCP socket listening on `port` (its network namespace's /proc view).
fn wait_listening(process: &ChildGuard, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let suffix = format!(":{port:04X}");
    loop {
        let found = ["tcp", "tcp6"].iter().any(|table| {
            let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", process.pid())).unwrap_or_default();
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3 && fields[1].ends_with(&suffix) && fields[3] == "0A"
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_match_the_header_first() {
        let yaml = routes_yaml("echo-h1");
        let header = yaml.find("name: header").unwrap();
        let default = yaml.find("name: default").unwrap();
        assert!(header < default && yaml.contains("x-bench-route: {exact: header}"), "{yaml}");
        assert!(yaml.contains("metadata: {name: echo-h1, namespace: bench-wp}"));
    }
}
