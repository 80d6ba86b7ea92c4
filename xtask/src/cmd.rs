//! Running other programs: echo the command line, stream its output, turn failure into an
//! [`Error`] that names the command. Quiet probes (`--version` checks) capture output instead.

use std::{
    ffi::{OsStr, OsString},
    fmt,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    error::{Error, Result},
    host,
};

/// A command line to run, built step by step.
pub(crate) struct Cmd {
    program: OsString,
    /// How the program is shown when echoed (`cargo` rather than the toolchain's full path).
    shown_as: Option<&'static str>,
    args: Vec<OsString>,
    envs: Vec<(&'static str, OsString)>,
    dir: Option<PathBuf>,
}

impl Cmd {
    pub(crate) fn new(program: impl Into<OsString>) -> Self {
        Self { program: program.into(), shown_as: None, args: Vec::new(), envs: Vec::new(), dir: None }
    }

    /// The cargo that runs xtask, in the workspace root.
    pub(crate) fn cargo() -> Self {
        Self { shown_as: Some("cargo"), ..Self::new(host::cargo()) }.dir(host::workspace_root())
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn env(mut self, key: &'static str, value: impl Into<OsString>) -> Self {
        self.envs.push((key, value.into()));
        self
    }

    pub(crate) fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Echoes and runs the command with inherited stdio; an error unless it exits successfully.
    pub(crate) fn run(&self) -> Result {
        if self.run_ok()? { Ok(()) } else { Err(Error::new(format!("`{self}` failed; its output above says why"))) }
    }

    /// Echoes and runs the command with inherited stdio; `Ok(false)` when it exits unsuccessfully,
    /// an error only when it cannot be started at all.
    pub(crate) fn run_ok(&self) -> Result<bool> {
        println!("$ {self}");
        let status = self.command().status().map_err(|e| self.spawn_error(&e))?;
        if !status.success() {
            eprintln!("[xtask] `{}` exited with {status}", self.shown_program());
        }
        Ok(status.success())
    }

    /// Runs the command quietly: its stdout when it succeeds, otherwise why not (the first line
    /// of its stderr, or why it could not start). The answer to "is this tool here and working?".
    pub(crate) fn probe(&self) -> std::result::Result<String, String> {
        let output = self.command().stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr.lines().find(|l| !l.trim().is_empty()).map_or_else(|| output.status.to_string(), str::to_owned))
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    fn shown_program(&self) -> String {
        self.shown_as.map_or_else(|| self.program.to_string_lossy().into_owned(), str::to_owned)
    }

    fn spawn_error(&self, err: &std::io::Error) -> Error {
        let program = self.shown_program();
        let hint = match err.kind() {
            ErrorKind::NotFound if program.contains('/') => ": it does not exist; was it built?".to_owned(),
            ErrorKind::NotFound => format!(": `{program}` is not installed or not on PATH"),
            _ => String::new(),
        };
        Error::new(format!("could not start `{self}`: {err}{hint}"))
    }
}

/// The command line as a shell would read it: `$ KEY=value program arg 'arg with space'`.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{key}={} ", quote(value))?;
        }
        write!(f, "{}", quote(OsStr::new(&self.shown_program())))?;
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

/// Single-quotes a word for the shell when it holds anything but plainly safe characters.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=+,@%~".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reads_like_a_shell_command() {
        let cmd = Cmd::new("cargo")
            .args(["install", "bpf-linker", "--version", "~0.13"])
            .env("RUSTFLAGS", "-C link-arg=-Wl,-rpath,/x/lib");
        assert_eq!(
            cmd.to_string(),
            "RUSTFLAGS='-C link-arg=-Wl,-rpath,/x/lib' cargo install bpf-linker --version ~0.13"
        );
        assert_eq!(Cmd::new("echo").arg("it's").arg("").to_string(), r"echo 'it'\''s' ''");
    }

    #[test]
    fn cargo_is_echoed_by_name_and_runs_in_the_workspace() {
        let cmd = Cmd::cargo().arg("build");
        assert_eq!(cmd.to_string(), "cargo build");
        assert_eq!(cmd.dir.as_deref(), Some(host::workspace_root()));
    }

    #[test]
    fn probe_returns_stdout_or_why_not() {
        assert_eq!(Cmd::new("echo").arg("hi").probe(), Ok("hi\n".to_owned()));
        assert!(Cmd::new("ambit-no-such-program").probe().is_err());
        assert_eq!(Cmd::new("false").probe(), Err("exit status: 1".to_owned()));
        let err = Cmd::new("sh").args(["-c", "echo; echo broken >&2; exit 3"]).probe();
        assert_eq!(err, Err("broken".to_owned()));
    }

    #[test]
    fn run_names_the_failed_command() {
        let err = Cmd::new("false").run().unwrap_err();
        assert!(err.to_string().contains("`false` failed"), "{err}");
        let err = Cmd::new("ambit-no-such-program").run().unwrap_err();
        assert!(err.to_string().contains("not installed or not on PATH"), "{err}");
    }
}
