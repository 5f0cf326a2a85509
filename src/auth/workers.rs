//! A small pool of low-priority threads for CPU-heavy work (argon2, password policy checks),
//! with a bounded queue in front.
//!
//! Password hashing is meant to be slow (~20 ms of CPU and 19 MiB each). Running it on tokio's
//! blocking pool would let a login flood start hundreds of hashes at once and starve the async
//! workers that serve cheap requests like `GET /users/me`. Here at most `workers` jobs run at
//! once, at a lower OS priority than the async workers; at most `queue` more wait; beyond
//! that a job is refused at once with [`PoolError::Overloaded`] (the caller answers `503`).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("too many password operations in progress")]
    Overloaded,
    #[error("the worker pool has stopped")]
    Stopped,
}

/// Cloning shares the pool; its threads end when the last clone is dropped.
#[derive(Clone)]
pub struct CpuPool {
    sender: SyncSender<Job>,
    workers: usize,
    queue: usize,
}

impl CpuPool {
    /// `workers` threads, and room for `queue` jobs waiting for one. With `idle`, a pool
    /// thread calls `idle.hook` each time the queue has stayed empty for `idle.after` (and
    /// again every `idle.after` while it stays so).
    pub fn new(workers: usize, queue: usize, idle: Option<Idle>) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            let idle = idle.clone();
            std::thread::Builder::new()
                .name(format!("authd-hash-{i}"))
                .spawn(move || work(&receiver, idle))?;
        }
        Ok(Self {
            sender,
            workers,
            queue,
        })
    }

    /// Runs `job` on a pool thread and waits for its result without blocking the runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        self.sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Overloaded,
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })?;
        rx.await.map_err(|_| PoolError::Stopped)
    }

    /// How many jobs can be running or waiting before new ones are refused.
    pub fn capacity(&self) -> usize {
        self.workers + self.queue
    }
}

/// What a pool does when it has had no work for a while (see [`CpuPool::new`]).
#[derive(Clone)]
pub struct Idle {
    pub after: Duration,
    pub hook: Arc<dyn Fn() + Send + Sync>,
}

fn work(receiver: &Mutex<Receiver<Job>>, idle: Option<Idle>) {
    lower_priority();
    loop {
        // One thread at a time waits on the queue (the others on the lock), so the hook
        // runs once per idle period, not once per thread.
        let job = match (receiver.lock(), &idle) {
            (Ok(receiver), Some(idle)) => receiver.recv_timeout(idle.after),
            (Ok(receiver), None) => receiver.recv().map_err(RecvTimeoutError::from),
            (Err(_), _) => return,
        };
        let job = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(idle) = &idle {
                    (idle.hook)();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // A panicking job loses its own result (its caller sees `Stopped`), not the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Raises this thread's nice value so that, when the cores are busy hashing, the scheduler
/// still prefers the async workers that answer cheap requests.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let pool = CpuPool::new(2, 4, None).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn refuses_at_once_beyond_workers_plus_queue() {
        let pool = CpuPool::new(1, 2, None).unwrap();
        assert_eq!(pool.capacity(), 3);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut running = Vec::new();
        for _ in 0..3 {
            let gate = gate.clone();
            let p = pool.clone();
            running.push(tokio::spawn(async move {
                p.run(move || {
                    let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(5));
                })
                .await
            }));
            // One at a time, so that the first is running before the others queue.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pool.run(|| ()).await, Err(PoolError::Overloaded));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for job in running {
            assert_eq!(job.await.unwrap(), Ok(()));
        }
        assert_eq!(pool.run(|| 1).await, Ok(1), "room again once drained");
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_its_thread() {
        let pool = CpuPool::new(1, 1, None).unwrap();
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(PoolError::Stopped)
        );
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }
}
