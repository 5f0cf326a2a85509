//! The reads on the hot paths: the per-request revocation check and the refresh-token lookup.
//!
//! Every authenticated request must see the database as it is after the request arrived, so
//! that a logout on any replica takes effect at once. Asking one pooled query per request
//! makes each request pay a full round trip: on SQLite a hand-off to the connection's thread
//! and back, which costs far more than the lookup itself. So:
//!
//! - Session checks are grouped ([`batch`]): concurrent requests share one read. On a SQLite
//!   file it is one read transaction on a direct connection ([`SqliteReaders`]), run on the
//!   runtime thread, so the WAL-index lock is taken once per group instead of once per
//!   request; on PostgreSQL it is one `WHERE id = ANY($1)` query on a connection of the
//!   dispatcher's own ([`PgCheckers`]). A check is only ever answered
//!   by a read started after it was queued, so the guarantee is unchanged.
//! - The refresh-token lookup runs on the calling thread through the direct readers on a
//!   SQLite file, and as a pooled query on PostgreSQL.

use std::{collections::HashMap, sync::Arc};

use uuid::Uuid;

use super::{
    batch, checkpoint::Checkpointer, pg_checkers::PgCheckers, sqlite_reader::SqliteReaders, Db,
    RefreshRecord, RepoError, RepoResult,
};
use crate::domain::User;

/// Session-check queries in flight at once; further checks queue meanwhile and form the
/// next batch.
const IN_FLIGHT: usize = 2;

/// A session check: `(session_id, user_id)`, answered with the user if the session is live,
/// belongs to that user, and the account is enabled.
type Check = batch::Item<(Uuid, Uuid), Option<User>>;

/// The hot-path reads; cheap to clone. The check dispatcher ends with the last handle.
#[derive(Clone, Debug)]
pub struct Lookups {
    db: Db,
    /// Direct read connections, when the database is a SQLite file.
    readers: Option<Arc<SqliteReaders>>,
    /// The WAL checkpoint task, when the database is a SQLite file; it stops with the last
    /// clone.
    _checkpointer: Option<Arc<Checkpointer>>,
    checks: batch::Queue<(Uuid, Uuid), Option<User>>,
}

impl Lookups {
    /// Opens direct readers on a SQLite file and starts its checkpoint task, and starts the
    /// session-check dispatcher, on the current Tokio runtime.
    pub fn start(db: Db) -> Result<Self, RepoError> {
        let mut readers = None;
        let mut checkpointer = None;
        if let Db::Sqlite(pool) = &db {
            let path = pool.connect_options().get_filename().to_path_buf();
            // An in-memory database has no file to open a second connection to.
            if path.is_file() {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let opened = SqliteReaders::open(&path, threads).map_err(RepoError::Reader)?;
                readers = Some(Arc::new(opened));
                let started =
                    Checkpointer::start(&path, pool.clone()).map_err(RepoError::Reader)?;
                checkpointer = Some(Arc::new(started));
            }
        }
        let checks = match &readers {
            // The reads take microseconds on the dispatcher's own thread: one group at a time.
            Some(readers) => {
                let readers = readers.clone();
                batch::start(1, move |checks| {
                    answer_inline(&readers, checks);
                    std::future::ready(())
                })
            }
            None => {
                let source = match &db {
                    Db::Postgres(pool) => Source::Postgres(Arc::new(PgCheckers::new(
                        pool.connect_options().as_ref().clone(),
                        IN_FLIGHT,
                    ))),
                    Db::Sqlite(_) => Source::Pool(db.clone()),
                };
                batch::start(IN_FLIGHT, move |checks| answer(source.clone(), checks))
            }
        };
        Ok(Self {
            db,
            readers,
            _checkpointer: checkpointer,
            checks,
        })
    }

    /// A presented refresh token, by hash, with the state of its session and user.
    pub async fn find_refresh(&self, token_hash: &[u8]) -> RepoResult<Option<RefreshRecord>> {
        match &self.readers {
            Some(readers) => readers.find_refresh(token_hash).map_err(RepoError::Reader),
            None => self.db.find_refresh(token_hash).await,
        }
    }

    /// The user behind a session, if the session is live, belongs to `user_id`, and the
    /// account is enabled.
    pub async fn session_user(&self, session_id: Uuid, user_id: Uuid) -> RepoResult<Option<User>> {
        batch::ask(&self.checks, (session_id, user_id)).await
    }
}

/// A group of checks on the direct SQLite readers, in one read transaction.
///
/// Checks of the same session in one group (a client's concurrent requests with one access
/// token) are read once: each is answered by the same read, which started after all of them
/// were queued.
fn answer_inline(readers: &SqliteReaders, checks: Vec<Check>) {
    let (keys, slots) = distinct(checks.iter().map(|c| c.query));
    match readers.session_users(&keys) {
        Ok(mut users) => {
            // The last check of each session takes its user; only repeats before it clone.
            let mut left = vec![0_usize; users.len()];
            for &slot in &slots {
                left[slot] += 1;
            }
            for (check, slot) in checks.into_iter().zip(slots) {
                left[slot] -= 1;
                let user = if left[slot] == 0 {
                    users[slot].take()
                } else {
                    users[slot].clone()
                };
                let _ = check.reply.send(Ok(user));
            }
        }
        Err(err) => batch::fail_all(
            checks.into_iter().map(|c| c.reply),
            &RepoError::Reader(err),
            "session check",
        ),
    }
}

/// The distinct keys of a group, in order of first appearance, and for each key of the group
/// its index among them. Groups are small ([`batch::MAX_BATCH`]): a linear search will do.
fn distinct<K: PartialEq + Copy>(group: impl Iterator<Item = K>) -> (Vec<K>, Vec<usize>) {
    let mut keys: Vec<K> = Vec::new();
    let slots = group
        .map(|key| {
            keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            })
        })
        .collect();
    (keys, slots)
}

/// Where grouped checks are answered when there are no direct SQLite readers.
#[derive(Clone)]
enum Source {
    /// Connections of their own on PostgreSQL (no pings around each query).
    Postgres(Arc<PgCheckers>),
    /// The pool, for an in-memory SQLite database.
    Pool(Db),
}

async fn answer(source: Source, checks: Vec<Check>) {
    let mut ids: Vec<Uuid> = checks.iter().map(|c| c.query.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = match &source {
        Source::Postgres(checkers) => checkers.session_users(&ids).await,
        Source::Pool(db) => batch::with_timeout(db.session_users(&ids)).await,
    };
    match rows {
        Ok(rows) => {
            let by_session: HashMap<Uuid, (Uuid, User)> = rows.into_iter().collect();
            for check in checks {
                let (session_id, user_id) = check.query;
                let user = by_session
                    .get(&session_id)
                    .filter(|(owner, _)| *owner == user_id)
                    .map(|(_, user)| user.clone());
                let _ = check.reply.send(Ok(user));
            }
        }
        Err(err) => batch::fail_all(checks.into_iter().map(|c| c.reply), &err, "session check"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_reads_each_distinct_check_once_and_answers_every_one() {
        let (keys, slots) = distinct(["a", "b", "a", "c", "b", "a"].into_iter());
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(slots, [0, 1, 0, 2, 1, 0]);
        let (keys, slots) = distinct(std::iter::empty::<u8>());
        assert!(keys.is_empty() && slots.is_empty());
    }
}
