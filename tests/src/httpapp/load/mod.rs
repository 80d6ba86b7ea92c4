//! `load`: N requests over C workers, each request's outcome tallied into one `summary` event
//! (and a `response` event each with `--each`). Transport failures are counted, never fatal.
//!
//! Workers take request indexes from a shared counter. Without `--rate` each sends its next
//! request as soon as the previous one is answered (closed loop). With `--rate R` request `i` is
//! due at `start + i/R` and its latency runs from that moment, so time spent waiting for a busy
//! worker counts (an open loop, without coordinated omission). `--deadline-ms` bounds the run:
//! requests not started by then are not sent, and those in flight are abandoned uncounted.

mod grpc;
mod http;
mod outcome;
mod summary;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{task::JoinSet, time::Instant};

use self::{
    grpc::GrpcClient,
    http::{H2c, Http1, HttpShared},
    outcome::{Failure, Outcome},
    summary::Tally,
};
use super::{
    args::{LoadArgs, LoadProtocol},
    emit::emit,
};

pub(super) async fn run(args: LoadArgs) -> Result<(), String> {
    let transport = Transport::new(&args)?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        next: AtomicU64::new(0),
        count: args.count,
        start: started,
        deadline: started + args.deadline,
        rate: args.rate,
        timeout: args.timeout,
        each: args.each,
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency.min(args.count) {
        workers.spawn(work(transport.worker(), plan.clone(), tally.clone()));
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| format!("a load worker failed: {e}"))?;
    }
    let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
    emit(&tally.summary(args.count, started.elapsed(), transport.connections()));
    Ok(())
}

/// What the workers share: which request is next, and when the run ends.
struct Plan {
    next: AtomicU64,
    count: u64,
    start: Instant,
    deadline: Instant,
    rate: Option<f64>,
    timeout: Duration,
    each: bool,
}

impl Plan {
    /// The next request's index and, with `--rate`, when it is due.
    fn take(&self) -> Option<(u64, Option<Instant>)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.count {
            return None;
        }
        let due = self.rate.map(|rate| self.start + Duration::from_secs_f64(i as f64 / rate));
        Some((i, due))
    }
}

async fn work(mut worker: Worker, plan: Arc<Plan>, tally: Arc<Mutex<Tally>>) {
    while let Some((i, due)) = plan.take() {
        if due.is_some_and(|due| due >= plan.deadline) {
            break;
        }
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let now = Instant::now();
        if now >= plan.deadline {
            break;
        }
        let cut_off = (now + plan.timeout).min(plan.deadline);
        let mut outcome = match tokio::time::timeout_at(cut_off, worker.send(i)).await {
            Ok(outcome) => outcome,
            Err(_) if cut_off == plan.deadline => break,
            Err(_) => Outcome::failed(Failure::timeout(plan.timeout)),
        };
        outcome.latency = due.unwrap_or(now).elapsed();
        if plan.each {
            emit(&outcome.event(i));
        }
        tally.lock().unwrap_or_else(|p| p.into_inner()).record(&outcome);
    }
}

/// What all workers of a run share, per protocol.
enum Transport {
    Http1(Arc<HttpShared>),
    H2c(Arc<H2c>),
    Grpc(GrpcClient),
}

impl Transport {
    fn new(args: &LoadArgs) -> Result<Self, String> {
        Ok(match args.protocol {
            LoadProtocol::Http1 => Transport::Http1(Arc::new(HttpShared::new(args)?)),
            LoadProtocol::H2c => Transport::H2c(Arc::new(H2c::new(Arc::new(HttpShared::new(args)?)))),
            LoadProtocol::Grpc => Transport::Grpc(GrpcClient::new(args)?),
        })
    }

    fn worker(&self) -> Worker {
        match self {
            Transport::Http1(shared) => Worker::Http1(Http1::new(shared.clone())),
            Transport::H2c(h2c) => Worker::H2c(h2c.clone()),
            Transport::Grpc(client) => Worker::Grpc(client.clone()),
        }
    }

    /// Connections opened (the gRPC channel keeps its own count).
    fn connections(&self) -> Option<u64> {
        match self {
            Transport::Http1(shared) => Some(shared.connections()),
            Transport::H2c(h2c) => Some(h2c.connections()),
            Transport::Grpc(_) => None,
        }
    }
}

/// One worker's handle on the transport.
enum Worker {
    Http1(Http1),
    H2c(Arc<H2c>),
    Grpc(GrpcClient),
}

impl Worker {
    async fn send(&mut self, i: u64) -> Outcome {
        match self {
            Worker::Http1(conn) => conn.send(i).await,
            Worker::H2c(conn) => conn.send(i).await,
            Worker::Grpc(client) => Box::pin(client.send(i)).await,
        }
    }
}
