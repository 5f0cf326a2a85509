//! A small pool of low-priority threads for CPU-heavy work (argon2, password policy checks),
//! with a bounded queue in front.
//!
//! Password hashing is meant to be slow (CPU-heavy by design, with a large memory buffer
//! each). Running it on tokio's blocking pool would let a login flood start hundreds of
//! hashes at once and starve the async workers that serve cheap requests like
//! `GET /users/me`. Here at most `workers` jobs run at once, at a lower OS priority than the
//! async workers; at most `queue` more wait; beyond that a job is refused at once with
//! [`PoolError::Overloaded`] (the caller answers `503`).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
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
    /// Jobs accepted and not yet finished: running or waiting.
    pending: Arc<AtomicUsize>,
}

impl CpuPool {
    /// `workers` threads, and room for `queue` jobs waiting for one.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("authd-hash-{i}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Self {
            sender,
            workers,
            queue,
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `job` on a pool thread and waits for its result without blocking the runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let pending = self.pending.clone();
        let job: Job = Box::new(move || {
            // Counted out however the job ends, a panic included.
            let _finished = Finished(pending);
            let _ = tx.send(job());
        });
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.sender.try_send(job).map_err(|e| {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => PoolError::Overloaded,
                TrySendError::Disconnected(_) => PoolError::Stopped,
            }
        })?;
        rx.await.map_err(|_| PoolError::Stopped)
    }

    /// Jobs running or waiting now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// How many jobs can be running or waiting before new ones are refused.
    pub fn capacity(&self) -> usize {
        self.workers + self.queue
    }
}

/// Takes a job off the pending count when dropped.
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        // One thread at a time waits on the queue, the others on the lock.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panicking job loses its own result (its caller sees `Stopped`), not the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// The hashing threads' nice value. With the cores saturated by logins and cheap requests
/// at once, the scheduler shares each core by the threads' weights: at nice 10 the async
/// workers kept nearly all of it and logins starved; at 0 the cheap requests lost half
/// their rate. At 1, each kept about half of what it has alone (BENCHMARKS.md, ledger).
#[cfg(target_os = "linux")]
const HASHING_NICE: libc::c_int = 1;

/// Marks this thread as a hashing thread for the scheduler: a slightly lower priority
/// ([`HASHING_NICE`]) and the batch policy (`SCHED_BATCH`: CPU-bound, not interactive, so it
/// preempts less on waking and is preempted less often: fewer switches between a hash and
/// the requests around it).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls only read their arguments (`param` lives across the call); `0`
    // names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, HASHING_NICE);
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let pool = CpuPool::new(2, 4).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_at_the_hashing_priority_under_the_batch_policy() {
        let pool = CpuPool::new(1, 1).unwrap();
        // SAFETY: both calls only read their arguments; `0` names the calling thread.
        let (nice, policy) = pool
            .run(|| unsafe {
                (
                    libc::getpriority(libc::PRIO_PROCESS, 0),
                    libc::sched_getscheduler(0),
                )
            })
            .await
            .unwrap();
        assert_eq!((nice, policy), (HASHING_NICE, libc::SCHED_BATCH));
    }

    #[tokio::test]
    async fn refuses_at_once_beyond_workers_plus_queue() {
        let pool = CpuPool::new(1, 2).unwrap();
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
        let pool = CpuPool::new(1, 1).unwrap();
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(PoolError::Stopped)
        );
        assert_eq!(pool.run(|| 5).await, Ok(5));
    }
}
