//! The pods on this node and their enrollment. One task owns all of it and applies, in order,
//! what the CNI reports (pod added/deleted) and what the cluster source says (labels, control-plane decisions),
//! so enrollment decisions never race each other. Everyone else reads published snapshots.

mod enrolled;
mod state_file;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ambit_common::{
    enrollment::Enrollment,
    pod_api::{PodSpec, PodSpecError, PodStatus},
};
pub(crate) use enrolled::EnrolledInfo;
use enrolled::EnrolledPod;
use serde::Serialize;
pub(crate) use state_file::StateFile;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{capture::PruneReport, cluster::SharedView, proxy::ProxyContext};

/// How often pods whose enrollment failed are retried.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpsertError {
    #[error(transparent)]
    Invalid(#[from] PodSpecError),
    #[error("pod {pod} is scheduled on node {pod_node}, but this node proxy serves node {node}")]
    WrongNode { pod: String, pod_node: String, node: String },
    #[error("pod {pod} must be enrolled but capture could not be set up: {error}")]
    Enroll { pod: String, error: String },
    #[error("cannot persist the pod list to {path}: {error}")]
    Persist { path: String, error: String },
    #[error("the node proxy is shutting down")]
    ShuttingDown,
}

/// A pod as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodView {
    #[serde(flatten)]
    pub(crate) status: PodStatus,
    /// The last enrollment error, if capture should be on but is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) capture: Option<EnrolledInfo>,
}

enum Command {
    Upsert(PodSpec, oneshot::Sender<Result<PodStatus, UpsertError>>),
    Delete(String, oneshot::Sender<Result<(), UpsertError>>),
}

/// The handle the pod-event API and the admin API use.
#[derive(Clone)]
pub(crate) struct Pods {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Vec<PodView>>>,
}

impl Pods {
    pub(crate) async fn upsert(&self, spec: PodSpec) -> Result<PodStatus, UpsertError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Upsert(spec, reply)).await.map_err(|_| UpsertError::ShuttingDown)?;
        answer.await.map_err(|_| UpsertError::ShuttingDown)?
    }

    pub(crate) async fn delete(&self, uid: String) -> Result<(), UpsertError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Delete(uid, reply)).await.map_err(|_| UpsertError::ShuttingDown)?;
        answer.await.map_err(|_| UpsertError::ShuttingDown)?
    }

    pub(crate) fn snapshot(&self) -> Arc<Vec<PodView>> {
        self.snapshot.borrow().clone()
    }
}

struct KnownPod {
    spec: PodSpec,
    enrollment: Enrollment,
    enrolled: Option<EnrolledPod>,
    error: Option<String>,
}

struct PodManager {
    node: String,
    proxy: Arc<ProxyContext>,
    view: SharedView,
    state: StateFile,
    pods: BTreeMap<String, KnownPod>,
    snapshot: watch::Sender<Arc<Vec<PodView>>>,
}

/// Restores the persisted pods, enrolls those that should be, removes what a previous instance
/// left for pods that are gone, and starts the manager task.
pub(crate) fn start(
    node: String,
    proxy: Arc<ProxyContext>,
    mut cluster: watch::Receiver<SharedView>,
    state: StateFile,
) -> Result<(Pods, PruneReport), std::io::Error> {
    let persisted = state.load()?;
    let (snapshot, snapshot_rx) = watch::channel(Arc::new(Vec::new()));
    let mut manager =
        PodManager { node, proxy, view: cluster.borrow_and_update().clone(), state, pods: BTreeMap::new(), snapshot };
    for spec in persisted {
        if let Err(e) = manager.check(&spec) {
            tracing::warn!(error = %e, "dropping an invalid persisted pod");
            continue;
        }
        manager.pods.insert(
            spec.uid.clone(),
            KnownPod { spec, enrollment: Enrollment::NamespaceUnknown, enrolled: None, error: None },
        );
    }
    let uids: Vec<String> = manager.pods.keys().cloned().collect();
    for uid in &uids {
        manager.reconcile(uid);
    }
    let cookies: Vec<u64> = manager.enrolled().map(|e| e.info.netns_cookie).collect();
    let enrolled_uids: Vec<&str> = manager.enrolled().map(|e| e.spec.uid.as_str()).collect();
    let report = manager.proxy.capture.prune(&cookies, &enrolled_uids).map_err(std::io::Error::other)?;
    manager.publish();

    let (commands, mut rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Upsert(spec, reply)) => { let _ = reply.send(manager.upsert(spec)); }
                    Some(Command::Delete(uid, reply)) => { let _ = reply.send(manager.delete(&uid)); }
                    None => return,
                },
                changed = cluster.changed() => {
                    if changed.is_err() { return; }
                    manager.view = cluster.borrow_and_update().clone();
                    manager.reconcile_all();
                }
                _ = retry.tick() => manager.retry_failed(),
            }
            manager.publish();
        }
    });
    Ok((Pods { commands, snapshot: snapshot_rx }, report))
}

impl PodManager {
    fn check(&self, spec: &PodSpec) -> Result<(), UpsertError> {
        spec.validate()?;
        if spec.node != self.node {
            return Err(UpsertError::WrongNode {
                pod: spec.key(),
                pod_node: spec.node.clone(),
                node: self.node.clone(),
            });
        }
        Ok(())
    }

    fn upsert(&mut self, spec: PodSpec) -> Result<PodStatus, UpsertError> {
        self.check(&spec)?;
        let uid = spec.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(known) => known.spec = spec,
            None => {
                self.pods.insert(
                    uid.clone(),
                    KnownPod { spec, enrollment: Enrollment::NamespaceUnknown, enrolled: None, error: None },
                );
            }
        }
        self.persist()?;
        self.reconcile(&uid);
        let Some(known) = self.pods.get(&uid) else {
            return Err(UpsertError::Enroll { pod: uid, error: "its network namespace does not exist".into() });
        };
        if let Some(error) = &known.error {
            return Err(UpsertError::Enroll { pod: known.spec.key(), error: error.clone() });
        }
        Ok(PodStatus::new(known.spec.clone(), known.enrollment))
    }

    fn delete(&mut self, uid: &str) -> Result<(), UpsertError> {
        if let Some(mut known) = self.pods.remove(uid) {
            if let Some(enrolled) = known.enrolled.take()
                && let Err(e) = enrolled.unenroll(&self.proxy)
            {
                tracing::warn!(error = %e, "cleaning up a deleted pod's capture state failed");
            }
            tracing::info!(pod = %known.spec.key(), "pod deleted");
        }
        self.persist()
    }

    fn persist(&self) -> Result<(), UpsertError> {
        self.state
            .store(self.pods.values().map(|p| &p.spec))
            .map_err(|e| UpsertError::Persist { path: self.state.path().display().to_string(), error: e.to_string() })
    }

    fn reconcile_all(&mut self) {
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.reconcile(&uid);
        }
    }

    fn retry_failed(&mut self) {
        let failed: Vec<String> = self.pods.iter().filter(|(_, p)| p.error.is_some()).map(|(u, _)| u.clone()).collect();
        for uid in failed {
            self.reconcile(&uid);
        }
    }

    /// Brings one pod's capture in line with what its labels and namespace say.
    fn reconcile(&mut self, uid: &str) {
        let Some(known) = self.pods.get_mut(uid) else { return };
        known.enrollment = self.view.decide(&known.spec.uid, &known.spec.namespace, &known.spec.labels);
        let want = known.enrollment.is_enrolled();
        // A changed address or namespace means the old capture state is for a different socket.
        let stale =
            known.enrolled.as_ref().is_some_and(|e| e.spec.netns != known.spec.netns || e.spec.ips != known.spec.ips);
        if (!want || stale)
            && let Some(enrolled) = known.enrolled.take()
            && let Err(e) = enrolled.unenroll(&self.proxy)
        {
            tracing::warn!(error = %e, "unenrolling failed");
        }
        if !want {
            known.error = None;
            return;
        }
        if let Some(enrolled) = &mut known.enrolled {
            enrolled.spec = known.spec.clone(); // labels may have changed; capture has not
            return;
        }
        match EnrolledPod::enroll(&known.spec, &self.proxy) {
            Ok(enrolled) => {
                known.enrolled = Some(enrolled);
                known.error = None;
            }
            Err(e) if e.pod_is_gone() => {
                tracing::warn!(error = %e, "the pod's network namespace is gone; forgetting the pod");
                self.pods.remove(uid);
                if let Err(e) = self.persist() {
                    tracing::warn!(error = %e, "cannot persist the pod list");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "enrolling pod failed; will retry");
                known.error = Some(e.to_string());
            }
        }
    }

    fn enrolled(&self) -> impl Iterator<Item = &EnrolledPod> {
        self.pods.values().filter_map(|p| p.enrolled.as_ref())
    }

    fn publish(&self) {
        let views = self
            .pods
            .values()
            .map(|p| PodView {
                status: PodStatus::new(p.spec.clone(), p.enrollment),
                error: p.error.clone(),
                capture: p.enrolled.as_ref().map(|e| e.info.clone()),
            })
            .collect();
        self.snapshot.send_replace(Arc::new(views));
    }
}
