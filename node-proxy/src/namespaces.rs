//! The standalone namespace source: a YAML file of Namespace objects, polled for changes (a
//! `kubectl label`-style edit enrolls or releases pods within a second). An invalid file is
//! reported and ignored: the last good version stays in force, and is kept in the state directory
//! so that a restart with a broken file does not silently release every pod.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use ambit_common::namespaces::NamespaceSet;
use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::{ClusterView, SharedView};

const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The source's health, for the admin API.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceStatus {
    pub(crate) path: PathBuf,
    /// Set while the file on disk is rejected (the last good version is in force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) namespaces: NamespaceSet,
}

pub(crate) struct NamespaceSource {
    path: PathBuf,
    last_good: PathBuf,
    status: Mutex<SourceStatus>,
}

impl NamespaceSource {
    /// Loads the file (falling back to the last good copy) and starts watching it.
    pub(crate) fn start(path: &Path, state_dir: &Path) -> (Arc<Self>, watch::Receiver<SharedView>) {
        let source = Arc::new(Self {
            path: path.to_owned(),
            last_good: state_dir.join("namespaces.last-good.yaml"),
            status: Mutex::new(SourceStatus { path: path.to_owned(), ..Default::default() }),
        });
        let mut content = std::fs::read_to_string(path).unwrap_or_default();
        let initial = match source.parse(&content) {
            Ok(set) => set,
            Err(()) => {
                match std::fs::read_to_string(&source.last_good).ok().and_then(|t| NamespaceSet::from_yaml(&t).ok()) {
                    Some(set) => {
                        tracing::warn!(path = %source.last_good.display(), "using the last good namespace file");
                        set
                    }
                    None => NamespaceSet::default(),
                }
            }
        };
        source.status.lock().expect("status lock").namespaces = initial.clone();
        let (tx, rx) = watch::channel(Arc::new(ClusterView::from_namespaces(&initial)));
        let watcher = source.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(POLL_INTERVAL);
            loop {
                ticker.tick().await;
                // A small local file: reading it inline is cheaper than a blocking-pool hop.
                let now = std::fs::read_to_string(&watcher.path).unwrap_or_default();
                if now == content {
                    continue;
                }
                content = now;
                if let Ok(set) = watcher.parse(&content) {
                    let view = ClusterView::from_namespaces(&set);
                    if **tx.borrow() != view {
                        tracing::info!(path = %watcher.path.display(), namespaces = set.len(), "namespace file reloaded");
                        watcher.status.lock().expect("status lock").namespaces = set;
                        tx.send_replace(Arc::new(view));
                    }
                }
            }
        });
        (source, rx)
    }

    pub(crate) fn status(&self) -> SourceStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// Parses `content`, recording the outcome; on success the text becomes the last good copy.
    fn parse(&self, content: &str) -> Result<NamespaceSet, ()> {
        let result = if content.is_empty() && !self.path.exists() {
            Err(format!("{} does not exist", self.path.display()))
        } else {
            NamespaceSet::from_yaml(content).map_err(|e| format!("{}: {e}", self.path.display()))
        };
        let mut status = self.status.lock().expect("status lock");
        match result {
            Ok(set) => {
                status.error = None;
                if let Err(e) = std::fs::write(&self.last_good, content) {
                    tracing::warn!(error = %e, path = %self.last_good.display(), "cannot keep a copy of the namespace file");
                }
                Ok(set)
            }
            Err(message) => {
                tracing::error!(error = %message, "namespace file rejected; the last good version stays in force");
                status.error = Some(message);
                Err(())
            }
        }
    }
}
