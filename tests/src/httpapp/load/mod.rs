//! `load`: N requests over C workers, each request's outcome tallied into one `summary` event
//! (and a `response` event each with `--each`). Transport failures are counted, never fatal.
//!
//! Without `--rate` workers take request indexes from a shared counter, each sending its next
//! request as soon as the previous one is answered (closed loop). With `--rate R` request `i` is
//! due at `start + i/R` and its latency runs from that moment, so time spent waiting for a busy
//! worker counts (an open loop, without coordinated omission). The due times are kept by a
//! pacer thread sleeping on the kernel's high-resolution timer (tokio's timer has a 1 ms
//! granularity, which put up to a millisecond of the tool's own delay into every latency): it
//! hands each request to the workers when it is due. `--deadline-ms` bounds the run: requests
//! not started by then are not sent, and those in flight are abandoned uncounted.

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

use tokio::{sync::mpsc, task::JoinSet, time::Instant};

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
    let deadline = started + args.deadline;
    let paced = match args.rate {
        Some(rate) => Some(tokio::sync::Mutex::new(pace(rate, args.count, started, deadline)?)),
        None => None,
    };
    let plan = Arc::new(Plan {
        next: AtomicU64::new(0),
        count: args.count,
        deadline,
        paced,
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
    deadline: Instant,
    /// With `--rate`: the requests as they fall due, from the pacer.
    paced: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, Instant)>>>,
    timeout: Duration,
    each: bool,
}

impl Plan {
    /// The next request's index and, with `--rate`, when it was due (it is due by now).
    async fn take(&self) -> Option<(u64, Option<Instant>)> {
        if let Some(paced) = &self.paced {
            return paced.lock().await.recv().await.map(|(i, due)| (i, Some(due)));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then_some((i, None))
    }
}

/// Starts the pacer: a thread that sends request `i` at `start + i/rate` (sleeping on the
/// kernel's high-resolution timer, with no timer slack), until `count` requests or the deadline.
fn pace(
    rate: f64,
    count: u64,
    start: Instant,
    deadline: Instant,
) -> Result<mpsc::UnboundedReceiver<(u64, Instant)>, String> {
    let (due_tx, due_rx) = mpsc::unbounded_channel();
    let (start, deadline) = (start.into_std(), deadline.into_std());
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            for i in 0..count {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= deadline {
                    return;
                }
                let now = std::time::Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if due_tx.send((i, Instant::from_std(due))).is_err() {
                    return; // the workers are gone
                }
            }
        })
        .map_err(|e| format!("cannot start the pacer thread: {e}"))?;
    Ok(due_rx)
}

async fn work(mut worker: Worker, plan: Arc<Plan>, tally: Arc<Mutex<Tally>>) {
    while let Some((i, due)) = plan.take().await {
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

#[cfg(test)]
mod pacer_tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_hands_out_every_request_in_order_once_due_and_stops_at_the_deadline() {
        let start = Instant::now();
        let mut due = pace(1000.0, 20, start, start + Duration::from_secs(30)).unwrap();
        let mut seen = Vec::new();
        while let Some((i, at)) = due.recv().await {
            assert!(Instant::now() >= at, "request {i} handed out before it was due");
            assert_eq!(at, start + Duration::from_millis(i), "request i is due at start + i/rate");
            seen.push(i);
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>());

        let start = Instant::now();
        let mut cut = pace(1000.0, 1_000, start, start + Duration::from_millis(5)).unwrap();
        let mut count = 0;
        while cut.recv().await.is_some() {
            count += 1;
        }
        assert_eq!(count, 5, "requests due at or after the deadline are never handed out");
    }
}
