//! `cargo xtask bench waypoint`: HTTP/1.1 and HTTP/2 requests/s and latency through the waypoint,
//! next to a direct connection, the L4 mesh and Envoy, in one run. See
//! `ambit_e2e::waypoint_bench` and docs/benchmarks.md.

fn main() -> std::process::ExitCode {
    use ambit_e2e::waypoint_bench;
    ambit_e2e::tool::run("ambit-waypoint-bench", waypoint_bench::USAGE, waypoint_bench::main)
}
