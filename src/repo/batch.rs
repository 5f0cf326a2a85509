//! Statements shared by concurrent requests.
//!
//! A request puts its item in a queue and waits for its answer; a dispatcher takes whatever
//! has queued and runs it as one statement. An idle server runs a group of one at once; a busy
//! one runs fewer, larger statements, each paying one round trip (and, for writes, one commit)
//! for the whole group. An item is only ever handled by a statement that started after it
//! was queued, so a read still sees every write committed before its request arrived.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{RepoError, RepoResult};

/// The most items one statement carries.
pub const MAX_BATCH: usize = 64;
/// Items waiting for a statement; beyond this a request waits to queue (back-pressure).
const QUEUE: usize = 4096;
/// A statement that takes longer fails its items as "unavailable" (e.g. a silent network).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A queued request: what it asks, and where its answer goes.
pub struct Item<Q, R> {
    pub query: Q,
    pub reply: oneshot::Sender<RepoResult<R>>,
}

/// The sending end of a dispatcher's queue; the dispatcher ends with the last clone.
pub type Queue<Q, R> = mpsc::Sender<Item<Q, R>>;

/// Queues `query` and waits for the answer of the group it joins.
pub async fn ask<Q, R>(queue: &Queue<Q, R>, query: Q) -> RepoResult<R> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(Item { query, reply })
        .await
        .map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

fn stopped() -> RepoError {
    RepoError::other("the statement dispatcher has stopped")
}

/// Starts a dispatcher on the current Tokio runtime that hands each group of queued items to
/// `run`, with at most `in_flight` groups running at once.
pub fn start<Q, R, F, Fut>(in_flight: usize, run: F) -> Queue<Q, R>
where
    Q: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<Item<Q, R>>) -> Fut + Send + 'static,
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
            if in_flight <= 1 {
                // Nothing else may run meanwhile: no task of its own needed.
                done.await;
            } else {
                tokio::spawn(async move {
                    done.await;
                    drop(slot);
                });
            }
        }
    });
    queue
}

/// Runs a statement with [`STATEMENT_TIMEOUT`]; one that takes longer is "unavailable".
pub async fn with_timeout<T>(statement: impl Future<Output = RepoResult<T>>) -> RepoResult<T> {
    tokio::time::timeout(STATEMENT_TIMEOUT, statement)
        .await
        .unwrap_or_else(|_| Err(RepoError::unavailable(super::error::TIMED_OUT)))
}

/// Answers every item of a group whose shared statement failed with its error, logged once
/// here for the whole group.
pub fn fail_all<Q, R>(items: Vec<Item<Q, R>>, err: &RepoError, what: &str) {
    let count = items.len();
    match err {
        RepoError::Unavailable(cause) => {
            tracing::warn!(items = count, error = %cause, "{what}: database unavailable")
        }
        other => tracing::error!(items = count, error = %other, "{what} failed"),
    }
    for item in items {
        let _ = item.reply.send(Err(err.clone()));
    }
}
