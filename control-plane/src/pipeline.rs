//! Readings → store → compile → push state. One task: readings are applied in order, bursts are
//! coalesced (only the newest reading matters), and a new push state is published only when the
//! effective configuration changed.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use ambit_common::config::{ConfigStore, ParseOutcome, Rejection, Skipped, Snapshot};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::{
    compile::{MeshConfig, compile},
    metrics::Metrics,
    push::state::PushState,
};

/// What the admin API shows about the configuration.
#[derive(Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// True once the first reading has been compiled.
    pub ready: bool,
    pub readings: u64,
    pub version: u64,
    pub objects: usize,
    pub rejections: Vec<Rejection>,
    pub skipped: Vec<Skipped>,
    pub last_compile_ms: f64,
    #[serde(skip)]
    pub snapshot: Snapshot,
}

pub struct Pipeline {
    status: Mutex<PipelineStatus>,
}

impl Pipeline {
    pub fn status(&self) -> PipelineStatus {
        self.status.lock().expect("pipeline status").clone()
    }

    /// Starts the pipeline task; the returned receiver always holds the latest push state
    /// (version 0 until the first reading).
    pub fn start(
        mesh: MeshConfig,
        mut readings: mpsc::Receiver<ParseOutcome>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, watch::Receiver<Arc<PushState>>) {
        let pipeline = Arc::new(Self { status: Mutex::new(PipelineStatus::default()) });
        let (state_tx, state_rx) = watch::channel(Arc::new(PushState::new(&Default::default(), None)));
        let this = pipeline.clone();
        tokio::spawn(async move {
            let mut store = ConfigStore::with_cluster_domain(&mesh.cluster_domain);
            while let Some(mut reading) = readings.recv().await {
                while let Ok(newer) = readings.try_recv() {
                    reading = newer;
                }
                this.apply(&mut store, reading, &mesh, &metrics, &state_tx);
            }
        });
        (pipeline, state_rx)
    }

    fn apply(
        &self,
        store: &mut ConfigStore,
        reading: ParseOutcome,
        mesh: &MeshConfig,
        metrics: &Metrics,
        state_tx: &watch::Sender<Arc<PushState>>,
    ) {
        let skipped = reading.skipped.clone();
        let previous_version = store.snapshot().version();
        let snapshot = store.apply(reading);
        let rejections = store.rejections().to_vec();
        for rejection in &rejections {
            let kept = if rejection.last_good_kept { "; its last good version stays in force" } else { "" };
            tracing::warn!("config rejected: {}{kept}", rejection.error);
        }
        metrics.rejected_objects.store(rejections.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut compile_ms = None;
        if snapshot.version() != previous_version || !self.status.lock().expect("pipeline status").ready {
            let started = Instant::now();
            let compiled = compile(&snapshot, mesh);
            let previous = state_tx.borrow().clone();
            let state = PushState::new(&compiled, Some(&previous));
            let elapsed = started.elapsed();
            metrics.compile.observe(elapsed);
            metrics.config_version.store(snapshot.version(), std::sync::atomic::Ordering::Relaxed);
            metrics.resources.store(state.resource_count() as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                version = snapshot.version(),
                objects = snapshot.len(),
                resources = state.resource_count(),
                compile_ms = elapsed.as_secs_f64() * 1e3,
                "configuration compiled"
            );
            state_tx.send_replace(Arc::new(state));
            compile_ms = Some(elapsed.as_secs_f64() * 1e3);
        }
        let mut status = self.status.lock().expect("pipeline status");
        status.ready = true;
        status.readings += 1;
        status.version = snapshot.version();
        status.objects = snapshot.len();
        status.rejections = rejections;
        status.skipped = skipped;
        status.snapshot = snapshot;
        if let Some(ms) = compile_ms {
            status.last_compile_ms = ms;
        }
    }
}
