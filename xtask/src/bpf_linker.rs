//! bpf-linker 0.13, built against LLVM 22 (the LLVM of the nightly that compiles our eBPF code):
//! aya-build needs it on PATH to link the eBPF programs.

use std::path::{Path, PathBuf};

use crate::{
    cmd::Cmd,
    error::{Error, Result},
    host, llvm,
    setup::Check,
};

const WANTED: &str = "bpf-linker 0.13.";

/// `Present` when the `bpf-linker` on PATH runs and is 0.13; an error when reinstalling cannot
/// help (a good one is installed but not reachable through PATH).
pub(crate) fn check() -> Result<Check> {
    let installed = installed_path().filter(|file| problem(file).is_none());
    let Some(on_path) = host::find_on_path("bpf-linker") else {
        return match installed {
            Some(file) => Err(not_on_path(&file)),
            None => Ok(Check::Missing("not on PATH".to_owned())),
        };
    };
    let Some(problem) = problem(&on_path) else {
        return Ok(Check::Present);
    };
    match installed {
        Some(file) if file != on_path => Err(Error::new(format!(
            "{} {problem}, and it comes before the working {} on PATH: remove it, or put {} \
             earlier in PATH",
            on_path.display(),
            file.display(),
            dir_of(&file).display()
        ))),
        _ => Ok(Check::Missing(format!("{} {problem}", on_path.display()))),
    }
}

/// `cargo install bpf-linker` with the stable toolchain against an LLVM 22 shared library, with an rpath to it so
/// the binary runs without `LD_LIBRARY_PATH`. About a minute on two cores.
pub(crate) fn install() -> Result {
    let llvm = llvm::find_llvm22()?;
    println!("[setup] building bpf-linker against {}", llvm.origin);
    Cmd::new("rustup")
        .args(["run", "stable", "cargo", "install", "bpf-linker", "--version", "~0.13"])
        .args(["--no-default-features", "--features", "llvm-22", "--force"])
        .env("LLVM_PREFIX", &llvm.prefix)
        .env("RUSTFLAGS", format!("-C link-arg=-Wl,-rpath,{}", llvm.lib_dir.display()))
        .run()
}

/// Where `cargo install` puts bpf-linker, if there is one there.
fn installed_path() -> Option<PathBuf> {
    host::cargo_install_bin_dir().map(|dir| dir.join("bpf-linker")).filter(|file| host::is_executable(file))
}

/// What is wrong with the bpf-linker at `file`, if anything.
fn problem(file: &Path) -> Option<String> {
    version_problem(Cmd::new(file).arg("--version").probe())
}

/// Judges the outcome of `bpf-linker --version`.
fn version_problem(version: std::result::Result<String, String>) -> Option<String> {
    match version {
        Ok(out) if out.starts_with(WANTED) => None,
        Ok(out) => Some(format!("is `{}`, not 0.13", out.trim())),
        // A bpf-linker built against a nightly's LLVM breaks when that nightly is updated away.
        Err(why) => Some(format!("does not run ({why})")),
    }
}

fn not_on_path(file: &Path) -> Error {
    let dir = dir_of(file);
    Error::new(format!(
        "bpf-linker is installed as {}, but {} is not on PATH, where the eBPF build looks for it: \
         add it (`export PATH=\"{}:$PATH\"`, and in your shell profile), then rerun",
        file.display(),
        dir.display(),
        dir.display()
    ))
}

fn dir_of(file: &Path) -> &Path {
    file.parent().unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_a_running_0_13() {
        assert_eq!(version_problem(Ok("bpf-linker 0.13.0\n".to_owned())), None);
        assert_eq!(version_problem(Ok("bpf-linker 0.13.7".to_owned())), None);
        assert_eq!(
            version_problem(Ok("bpf-linker 0.9.15\n".to_owned())).as_deref(),
            Some("is `bpf-linker 0.9.15`, not 0.13")
        );
        let broken = "bpf-linker: error while loading shared libraries: libLLVM.so.22.1-rust-1.97.0-nightly";
        let problem = version_problem(Err(broken.to_owned())).unwrap();
        assert!(problem.starts_with("does not run (bpf-linker: error while loading"), "{problem}");
    }
}
