//! Statements shared by concurrent requests.
//!
//! A request puts its item in a queue and waits for its answer; a dispatcher takes whatever
//! has queued and runs it as one statement. An idle server runs a group of one at once; a busy
//! one runs fewer, larger statements, each paying one round trip (and, for writes, one commit)
//! for the whole group. An item is only ever handled by a statement that started after it
//! was queued, so a read still sees every write committed before its request arrived.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::{mpsc, Semaphore};

use super::RepoError;

/// The most items one statement carries.
pub const MAX_BATCH: usize = 64;
/// Items waiting for a statement; beyond this a request waits to queue (back-pressure).
const QUEUE: usize = 4096;
/// A statement that takes longer fails its items as "unavailable" (e.g. a silent network).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a dispatcher on the current Tokio runtime that hands each group of queued items to
/// `run`, with at most `in_flight` groups running at once. It ends with the last sender.
pub fn start<T, F, Fut>(in_flight: usize, run: F) -> mpsc::Sender<T>
where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (queue, mut rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let mut group = Vec::with_capacity(MAX_BATCH);
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            if rx.recv_many(&mut group, MAX_BATCH).await == 0 {
                return;
            }
            // Requests woken together are polled before this task runs again, so their items
            // join this group instead of each starting a statement of its own.
            tokio::task::yield_now().await;
            while group.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => group.push(item),
                    Err(_) => break,
                }
            }
            // Everything queued now goes into this group; later items wait for the next one.
            let items = std::mem::replace(&mut group, Vec::with_capacity(MAX_BATCH));
            let done = run(items);
            tokio::spawn(async move {
                done.await;
                drop(slot);
            });
        }
    });
    queue
}

/// Runs a shared statement with [`STATEMENT_TIMEOUT`].
pub async fn with_timeout<T>(
    statement: impl Future<Output = Result<T, RepoError>>,
) -> Result<T, RepoError> {
    tokio::time::timeout(STATEMENT_TIMEOUT, statement)
        .await
        .unwrap_or(Err(RepoError::Shared { unavailable: true }))
}

/// The failure of a shared statement, for each of its `items` requests. The error itself is
/// not `Clone`: it is logged once here, and each request gets only whether it is worth
/// retrying later.
pub fn shared_failure(err: &RepoError, what: &str, items: usize) -> impl Fn() -> RepoError {
    let unavailable = match err {
        RepoError::Unavailable(_) => true,
        RepoError::Shared { unavailable } => *unavailable,
        _ => false,
    };
    if unavailable {
        tracing::warn!(items, "{what}: database unavailable");
    } else {
        tracing::error!(error = ?err, items, "{what} failed");
    }
    move || RepoError::Shared { unavailable }
}
