//! Thread per core for the proxies, as Envoy's workers: `count` threads, each driving its own
//! single-threaded tokio runtime. Work placed on a worker (a listener's accept loop, and with it
//! every task its connections spawn: the HTTP/2 connection drivers, the relays, the streams)
//! stays on that thread, so handing bytes or a request from one task to the next never wakes
//! another thread. On small VMs, waking a thread on another vCPU costs more than a proxy's own
//! work per request (docs/benchmarks.md).
//!
//! State kept per worker (connection pools) is indexed by [`index`]; [`count`] sizes it.

use std::{
    cell::Cell,
    future::Future,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::runtime::Handle;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

static COUNT: OnceLock<usize> = OnceLock::new();

/// The worker this thread is (0 on a thread that is not a worker: the control runtime, tests).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// How many workers this process runs (1 until [`Workers::start`]): the size of per-worker state.
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or(1)
}

/// The entry of per-worker state `slots` this thread uses.
pub fn slot<T>(slots: &[T]) -> &T {
    &slots[index() % slots.len()]
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("starting worker thread {index}: {source}")]
    Thread { index: usize, source: std::io::Error },
    #[error("this process already runs {0} workers; the worker count cannot change")]
    AlreadyStarted(usize),
    #[error("at least one worker is needed")]
    None,
}

/// The running workers.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` threads named `<name>-N`, each driving a single-threaded runtime until the
    /// process exits. Once per process.
    pub fn start(count: usize, name: &str) -> Result<Self, WorkersError> {
        if count == 0 {
            return Err(WorkersError::None);
        }
        if COUNT.set(count).is_err() {
            return Err(WorkersError::AlreadyStarted(self::count()));
        }
        let mut handles = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkersError::Thread { index, source })?;
            handles.push(runtime.handle().clone());
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    runtime.block_on(std::future::pending::<()>());
                })
                .map_err(|source| WorkersError::Thread { index, source })?;
        }
        Ok(Self { handles, next: AtomicUsize::new(0) })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Worker `index`'s runtime.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index % self.handles.len()]
    }

    /// The next worker in turn (to place a new long-lived piece of work, such as a pod's
    /// listeners).
    pub fn next(&self) -> &Handle {
        self.handle(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs `future` on worker `index`.
    pub fn spawn_on<F>(&self, index: usize, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle(index).spawn(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test in this crate that starts workers: the count is once per process.
    #[test]
    fn work_runs_on_its_worker_thread_and_stays_there() {
        assert_eq!((index(), count()), (0, 1), "before any worker starts");
        let workers = Workers::start(2, "test-wrk").unwrap();
        assert!(matches!(Workers::start(3, "again"), Err(WorkersError::AlreadyStarted(2))));
        assert_eq!((workers.len(), count()), (2, 2));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for worker in 0..2 {
            let seen = runtime.block_on(workers.spawn_on(worker, async {
                let outer = (index(), std::thread::current().name().map(str::to_owned));
                // A task spawned from a worker runs on the same worker.
                let inner = tokio::spawn(async { index() }).await.unwrap();
                (outer, inner)
            }));
            assert_eq!(seen.unwrap(), ((worker, Some(format!("test-wrk-{worker}"))), worker));
        }
        let first = workers.next().clone();
        let second = workers.next().clone();
        let on = |handle: &Handle| runtime.block_on(handle.spawn(async { index() })).unwrap();
        assert_ne!(on(&first), on(&second), "round robin");
        assert_eq!(slot(&["a", "b"]), &"a", "this thread is not a worker");
    }
}
