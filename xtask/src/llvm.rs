//! Finding an LLVM 22 to build bpf-linker against: Debian's `llvm-22-dev`, or the LLVM that ships
//! inside the nightly toolchain (nightly is on LLVM 22 as of Rust 1.97).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::{
    cmd::Cmd,
    error::{Error, Result},
    host,
};

const DEBIAN_PREFIX: &str = "/usr/lib/llvm-22";

/// An LLVM installation as bpf-linker's build script wants it.
pub(crate) struct Llvm {
    /// `LLVM_PREFIX`: bpf-linker links `<prefix>/lib/libLLVM.so`.
    pub(crate) prefix: PathBuf,
    /// The directory holding the real shared library, baked into bpf-linker as an rpath so the
    /// binary finds it at run time without `LD_LIBRARY_PATH`.
    pub(crate) lib_dir: PathBuf,
    /// Where it came from, for progress lines.
    pub(crate) origin: String,
}

/// Debian's LLVM 22 if installed, else the nightly toolchain's own; an error naming both options.
pub(crate) fn find_llvm22() -> Result<Llvm> {
    let debian = Path::new(DEBIAN_PREFIX);
    if debian.join("lib/libLLVM.so").exists() {
        return Ok(Llvm {
            prefix: debian.to_path_buf(),
            lib_dir: debian.join("lib"),
            origin: format!("Debian's llvm-22-dev in {DEBIAN_PREFIX}"),
        });
    }
    let sysroot = nightly_sysroot()?;
    let lib_dir = sysroot.join("lib");
    let names = fs::read_dir(&lib_dir)
        .map_err(|e| Error::new(format!("cannot list {}: {e}", lib_dir.display())))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok());
    let Some(library) = pick_rust_llvm22(names) else {
        return Err(Error::new(format!(
            "no LLVM 22 found to build bpf-linker against: {DEBIAN_PREFIX}/lib/libLLVM.so does not \
             exist and the nightly toolchain in {} does not ship LLVM 22. Either install Debian's \
             LLVM 22 (`apt-get install llvm-22-dev`, from apt.llvm.org on older releases) or install \
             a nightly whose LLVM is 22 (`rustc +nightly --version --verbose` shows its LLVM version)",
            sysroot.display()
        )));
    };
    let prefix = host::target_dir().join("ambit-tools/llvm-prefix");
    link_prefix(&prefix, &lib_dir.join(&library))
        .map_err(|e| Error::new(format!("cannot create the LLVM prefix {}: {e}", prefix.display())))?;
    Ok(Llvm { prefix, lib_dir, origin: format!("the nightly toolchain's {library}") })
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = Cmd::new("rustc").args(["+nightly", "--print", "sysroot"]).probe().map_err(|why| {
        Error::new(format!("`rustc +nightly --print sysroot` failed ({why}): is the nightly toolchain installed?"))
    })?;
    Ok(PathBuf::from(sysroot.trim()))
}

/// The real shared library among a nightly sysroot's `lib/` files: `libLLVM.so.22.<minor>-rust-…`.
/// Not `libLLVM-22-rust-….so`: that one is a one-line linker script (`INPUT(libLLVM.so.22.1-…)`)
/// which the linker follows but the loader cannot, so a bpf-linker linked through it would not run.
fn pick_rust_llvm22(names: impl IntoIterator<Item = String>) -> Option<String> {
    let mut found: Vec<String> = names
        .into_iter()
        .filter(|name| name.strip_prefix("libLLVM.so.22.").is_some_and(|rest| rest.contains("-rust-")))
        .collect();
    found.sort();
    found.pop()
}

/// Makes `<prefix>/lib/libLLVM.so` a symlink to `library`, replacing whatever was there.
fn link_prefix(prefix: &Path, library: &Path) -> io::Result<()> {
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    let link = lib.join("libLLVM.so");
    if fs::symlink_metadata(&link).is_ok() {
        fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(library, &link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn picks_the_shared_library_not_the_linker_script() {
        let lib = names(&[
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]);
        assert_eq!(pick_rust_llvm22(lib).as_deref(), Some("libLLVM.so.22.1-rust-1.97.0-nightly"));
    }

    #[test]
    fn other_llvm_versions_are_not_22() {
        let lib = names(&["libLLVM.so.21.1-rust-1.93.0-nightly", "libLLVM-23-rust-1.99.0-nightly.so"]);
        assert_eq!(pick_rust_llvm22(lib), None);
        assert_eq!(pick_rust_llvm22(names(&["libLLVM.so.220.1-rust-x"])), None);
    }

    #[test]
    fn prefix_link_is_created_and_replaced() {
        let dir = std::env::temp_dir().join(format!("xtask-llvm-test-{}", std::process::id()));
        let prefix = dir.join("prefix");
        link_prefix(&prefix, Path::new("/first")).unwrap();
        link_prefix(&prefix, Path::new("/second")).unwrap();
        assert_eq!(fs::read_link(prefix.join("lib/libLLVM.so")).unwrap(), Path::new("/second"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
