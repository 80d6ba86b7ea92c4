//! `cargo xtask bench waypoint`: HTTP/1.1 and HTTP/2 requests/s and latency through the waypoint,
//! next to a direct connection, the L4 mesh and Envoy, in one run. See
//! `ambit_e2e::waypoint_bench` and docs/benchmarks.md.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ambit_e2e::waypoint_bench::main(&args)
}
