//! The reads on the hot paths: the per-request revocation check and the refresh-token lookup.
//!
//! Every authenticated request must see the database as it is after the request arrived, so
//! that a logout on any replica takes effect at once. Asking one pooled query per request
//! makes each request pay a full round trip: on SQLite a hand-off to the connection's thread
//! and back, which costs far more than the lookup itself. So:
//!
//! - On a SQLite file, both reads run on the calling thread through [`SqliteReaders`].
//! - Otherwise (PostgreSQL), requests queue their session check and a dispatcher sends
//!   whatever has queued as one `WHERE id IN (...)` query. A check is only ever answered by a
//!   query started after it was queued, so the guarantee is unchanged: an idle server sends a
//!   batch of one at once; a busy one sends fewer, larger queries.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use super::{sqlite_reader::SqliteReaders, Db, RefreshRecord, RepoError, RepoResult};
use crate::domain::User;

/// The most checks one query carries.
const MAX_BATCH: usize = 64;
/// Queries in flight at once; further checks queue meanwhile and form the next batch.
const IN_FLIGHT: usize = 2;
/// Checks waiting for a query; beyond this a request waits to queue (back-pressure).
const QUEUE: usize = 4096;
/// A query that takes longer fails its checks as "unavailable" (e.g. a silent network).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<RepoResult<Option<User>>>;

pub struct Check {
    session_id: Uuid,
    user_id: Uuid,
    reply: Reply,
}

/// The session check; cheap to clone. A dispatcher ends with the last handle.
#[derive(Clone, Debug)]
pub enum Lookups {
    Inline(Arc<SqliteReaders>),
    Batched { db: Db, queue: mpsc::Sender<Check> },
}

impl Lookups {
    /// Opens direct readers on a SQLite file; otherwise starts a dispatcher on the current
    /// Tokio runtime.
    pub fn start(db: Db) -> Result<Self, RepoError> {
        if let Db::Sqlite(pool) = &db {
            let path = pool.connect_options().get_filename().to_path_buf();
            // An in-memory database has no file to open a second connection to.
            if path.is_file() {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let readers = SqliteReaders::open(&path, threads).map_err(RepoError::Reader)?;
                return Ok(Self::Inline(Arc::new(readers)));
            }
        }
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(db.clone(), rx));
        Ok(Self::Batched { db, queue })
    }

    /// A presented refresh token, by hash, with the state of its session and user.
    pub async fn find_refresh(&self, token_hash: &[u8]) -> RepoResult<Option<RefreshRecord>> {
        match self {
            Self::Inline(readers) => readers.find_refresh(token_hash).map_err(RepoError::Reader),
            Self::Batched { db, .. } => db.find_refresh(token_hash).await,
        }
    }

    /// The user behind a session, if the session is live, belongs to `user_id`, and the
    /// account is enabled.
    pub async fn session_user(&self, session_id: Uuid, user_id: Uuid) -> RepoResult<Option<User>> {
        let queue = match self {
            Self::Inline(readers) => {
                return readers
                    .session_user(session_id, user_id)
                    .map_err(RepoError::Reader)
            }
            Self::Batched { queue, .. } => queue,
        };
        let (reply, answer) = oneshot::channel();
        let check = Check {
            session_id,
            user_id,
            reply,
        };
        queue
            .send(check)
            .await
            .map_err(|_| RepoError::Shared { unavailable: false })?;
        answer
            .await
            .map_err(|_| RepoError::Shared { unavailable: false })?
    }
}

async fn dispatch(db: Db, mut rx: mpsc::Receiver<Check>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything queued now goes into this query; later checks wait for the next one.
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let checks = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        let db = db.clone();
        tokio::spawn(async move {
            answer(&db, checks).await;
            drop(slot);
        });
    }
}

async fn answer(db: &Db, checks: Vec<Check>) {
    let mut ids: Vec<Uuid> = checks.iter().map(|c| c.session_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = match tokio::time::timeout(QUERY_TIMEOUT, db.session_users(&ids)).await {
        Ok(found) => found,
        Err(_) => {
            tracing::warn!(checks = checks.len(), "session check timed out");
            Err(RepoError::Shared { unavailable: true })
        }
    };
    match found {
        Ok(rows) => {
            let by_session: HashMap<Uuid, (Uuid, User)> = rows.into_iter().collect();
            for check in checks {
                let user = by_session
                    .get(&check.session_id)
                    .filter(|(owner, _)| *owner == check.user_id)
                    .map(|(_, user)| user.clone());
                let _ = check.reply.send(Ok(user));
            }
        }
        Err(err) => {
            // The error is not `Clone`: log it once here, and answer each check with its kind.
            let unavailable = match &err {
                RepoError::Unavailable(_) => true,
                RepoError::Shared { unavailable } => *unavailable,
                _ => false,
            };
            if !unavailable {
                tracing::error!(error = ?err, "session check failed");
            }
            for check in checks {
                let _ = check.reply.send(Err(RepoError::Shared { unavailable }));
            }
        }
    }
}
