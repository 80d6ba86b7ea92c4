//! Compiles the eBPF programs (`ebpf/programs`) from source with the nightly toolchain and
//! bpf-linker, on every build: no prebuilt object is ever committed. `cargo xtask setup` installs
//! what this needs; every xtask command that builds runs it first.

use std::{env, path::PathBuf};

fn main() -> aya_build::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../ebpf/programs");
    let types_dir = manifest_dir.join("../ebpf/types");
    println!("cargo:rerun-if-changed={}", types_dir.display());
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    let out = PathBuf::from(env::var("OUT_DIR")?).join("ambit-ebpf");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        // `cargo check`/clippy without the eBPF toolchain: an empty object that the node proxy
        // refuses at start-up with a message saying how to build it for real.
        std::fs::write(&out, [])?;
        return Ok(());
    }
    if !on_path("bpf-linker") {
        return Err(std::io::Error::other(
            "bpf-linker is not on PATH: run `cargo xtask setup` (it installs bpf-linker 0.13 built \
             against LLVM 22 and the nightly rust-src component), or set AYA_BUILD_SKIP=1 for a \
             type-check-only build",
        )
        .into());
    }
    let ebpf_dir = ebpf_dir.canonicalize()?;
    let root_dir = ebpf_dir.to_str().expect("utf-8 workspace path");
    aya_build::build_ebpf(
        [aya_build::Package { name: "ambit-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH").map(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file())).unwrap_or(false)
}
