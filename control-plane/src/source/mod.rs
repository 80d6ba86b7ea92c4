//! Config sources. A source is a task that sends a complete reading of everything it holds
//! (`ParseOutcome`: valid objects, errors, skipped documents) whenever that changes; the store
//! keeps the last good version of each object. The control plane runs exactly one source, so a
//! reading replaces the previous one wholesale.
//!
//! - [`local`]: a directory of YAML files, re-read when a file changes.
//! - `kube`: Kubernetes watchers (reflectors), a reading after each batch of watch events.

pub mod kube;
pub mod local;

use ambit_common::config::ParseOutcome;
use tokio::sync::mpsc;

/// Where sources send their readings. Bounded: a slow consumer makes the source coalesce.
pub type ReadingSender = mpsc::Sender<ParseOutcome>;
