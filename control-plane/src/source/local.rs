//! The local source: a directory of multi-document YAML files (`*.yaml`, `*.yml`, searched
//! recursively), holding the same objects a cluster would — Namespaces, Pods, Services,
//! EndpointSlices and Istio resources. The directory is polled: when any file's size or
//! modification time changes, appears or disappears, everything is re-read and sent as one
//! reading. Hidden files and editor/atomic-write leftovers (`.*`, `*~`, `*.tmp`, `*.swp`) are
//! ignored, so writing a temporary file and renaming it over the real one is safe.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use ambit_common::config::{ConfigError, Origin, ParseOutcome, parse_documents};

use super::ReadingSender;

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Files larger than this are not read (a document is capped at 1 MiB anyway).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What identifies the directory's state without reading it.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Reads `dir` now and on every change, sending each complete reading on `tx`. Returns when
/// the receiver is gone.
pub async fn run(dir: PathBuf, tx: ReadingSender) {
    let mut last: Option<Fingerprint> = None;
    let mut warned_missing = false;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !dir.is_dir() {
            // Keep the configuration in force: a directory that vanished says nothing about it.
            if last.is_some() || !warned_missing {
                tracing::error!(dir = %dir.display(), "config directory is missing; keeping the last configuration read");
                warned_missing = true;
                last = None;
            }
            continue;
        }
        warned_missing = false;
        let fingerprint = fingerprint(&dir);
        if last.as_ref() == Some(&fingerprint) {
            continue;
        }
        let reading = read(&dir, &fingerprint);
        tracing::info!(
            dir = %dir.display(),
            files = fingerprint.len(),
            objects = reading.objects.len(),
            errors = reading.errors.len(),
            "config directory read"
        );
        last = Some(fingerprint);
        if tx.send(reading).await.is_err() {
            return;
        }
    }
}

/// A complete reading of `dir` (blocking file IO; the files are small and local).
pub fn read(dir: &Path, files: &Fingerprint) -> ParseOutcome {
    let mut reading = ParseOutcome::default();
    for (path, len, _) in files {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        if *len > MAX_FILE_BYTES {
            reading.errors.push(file_error(&shown, format!("{shown} is {len} bytes; the limit is {MAX_FILE_BYTES}")));
            continue;
        }
        match std::fs::read_to_string(path) {
            Ok(text) => reading.extend(parse_documents(&text, &shown)),
            Err(e) => reading.errors.push(file_error(&shown, format!("cannot read {shown}: {e}"))),
        }
    }
    reading
}

/// An error about a whole file (named as its documents' origins are): the store keeps what that
/// file last held.
fn file_error(shown: &str, message: String) -> ConfigError {
    ConfigError::new(None, "", message).with_origin(Origin::new(shown, 0))
}

pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files = Vec::new();
    collect(dir, &mut files, 0);
    files.sort();
    files
}

fn collect(dir: &Path, files: &mut Fingerprint, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored(&name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() && depth < 8 {
            collect(&path, files, depth + 1);
        } else if meta.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            files.push((path, meta.len(), meta.modified().ok()));
        }
    }
}

fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".tmp") || name.ends_with(".swp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yaml_files_recursively_and_ignores_leftovers() {
        let dir = std::env::temp_dir().join(format!("ambit-local-source-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let ns = |name: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n");
        std::fs::write(dir.join("a.yaml"), ns("a")).unwrap();
        std::fs::write(dir.join("sub/b.yml"), ns("b")).unwrap();
        std::fs::write(dir.join(".c.yaml"), ns("c")).unwrap();
        std::fs::write(dir.join("d.yaml.tmp"), ns("d")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not config").unwrap();
        let files = fingerprint(&dir);
        assert_eq!(files.len(), 2, "{files:?}");
        let reading = read(&dir, &files);
        assert_eq!(reading.objects.len(), 2);
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);

        std::fs::write(dir.join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  nme: x\n").unwrap();
        let reading = read(&dir, &fingerprint(&dir));
        assert_eq!(reading.objects.len(), 1);
        assert!(reading.errors[0].to_string().contains("a.yaml"), "{}", reading.errors[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
