//! Running helper commands (`ip`) with their exit status checked and stderr in the error.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Runs `program args…`, returning stdout; fails with the command line and stderr otherwise.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{program}` (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip args…`.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args).map(drop)
}

/// `ip -n <netns> args…`.
pub fn ip_in(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all)
}
