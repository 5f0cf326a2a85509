//! The per-request revocation check, grouped.
//!
//! Every authenticated request must see the database as it is after the request arrived, so
//! that a logout on any replica takes effect at once. One pooled query per request would make
//! each request pay a full round trip: on SQLite a hand-off to the connection's thread and
//! back, which costs far more than the lookup itself. So checks are grouped ([`batch`]):
//! concurrent requests share one read. On SQLite it is one read transaction on a direct
//! connection ([`SqliteReaders`]), run on the dispatcher's thread; on PostgreSQL one
//! `WHERE id = ANY($1)` query on a connection of the dispatcher's own ([`PgCheckers`]).
//! A check is only ever answered by a read started after it was queued, so the guarantee
//! holds.

use std::{collections::HashMap, sync::Arc};

use uuid::Uuid;

use super::{api_keys::KeyUser, batch, pg_checkers::PgCheckers, sqlite_reader::SqliteReaders};
use crate::domain::User;

/// PostgreSQL check statements in flight at once; further checks queue meanwhile and form
/// the next group. One: the checks arriving during a round trip all wait for the next
/// statement, so groups are larger and the async worker is woken for fewer answers. Under a
/// login flood each such wake-up takes the core back from a hashing thread, so fewer of them
/// leave `/users/me` a fairer share of the core (measured in BENCHMARKS.md's ledger).
const PG_IN_FLIGHT: usize = 1;

/// `(session_id, user_id)`, answered with the user if the session is live, belongs to that
/// user, and the account is enabled.
pub type Queue = batch::Queue<(Uuid, Uuid), Option<User>>;
type Check = batch::Item<(Uuid, Uuid), Option<User>>;

/// An API key's hash, answered with the key and its user unless revoked or disabled: the
/// same check for requests that come with a key, grouped the same way.
pub type KeyQueue = batch::Queue<[u8; 32], Option<KeyUser>>;
type KeyCheck = batch::Item<[u8; 32], Option<KeyUser>>;

/// Starts the API-key dispatcher for a SQLite file, as [`start_sqlite`].
pub fn start_sqlite_keys(readers: Arc<SqliteReaders>) -> KeyQueue {
    batch::start(1, move |checks| {
        answer_sqlite_keys(&readers, checks);
        std::future::ready(())
    })
}

/// A key presented by several requests of a group is read once for all of them.
fn answer_sqlite_keys(readers: &SqliteReaders, checks: Vec<KeyCheck>) {
    let (keys, slots) = distinct(checks.iter().map(|c| c.query));
    match readers.api_key_users(&keys) {
        Ok(found) => {
            for (check, slot) in checks.into_iter().zip(slots) {
                let _ = check.reply.send(Ok(found[slot].clone()));
            }
        }
        Err(err) => batch::fail_all(checks, &err, "API key check"),
    }
}

/// Starts the dispatcher for a SQLite file: one group at a time, read on its own thread in
/// microseconds.
pub fn start_sqlite(readers: Arc<SqliteReaders>) -> Queue {
    batch::start(1, move |checks| {
        answer_sqlite(&readers, checks);
        std::future::ready(())
    })
}

/// Starts the dispatcher for PostgreSQL.
pub fn start_postgres(checkers: Arc<PgCheckers>) -> Queue {
    batch::start(PG_IN_FLIGHT, move |checks| {
        answer_postgres(checkers.clone(), checks)
    })
}

/// Starts the API-key dispatcher for PostgreSQL, on the same check connections.
pub fn start_postgres_keys(checkers: Arc<PgCheckers>) -> KeyQueue {
    batch::start(PG_IN_FLIGHT, move |checks| {
        answer_postgres_keys(checkers.clone(), checks)
    })
}

async fn answer_postgres_keys(checkers: Arc<PgCheckers>, checks: Vec<KeyCheck>) {
    let (hashes, _) = distinct(checks.iter().map(|c| c.query));
    let hashes: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
    match checkers.key_users(&hashes).await {
        Ok(rows) => {
            let by_hash: HashMap<Vec<u8>, KeyUser> = rows.into_iter().collect();
            for check in checks {
                let _ = check.reply.send(Ok(by_hash.get(&check.query[..]).cloned()));
            }
        }
        Err(err) => batch::fail_all(checks, &err, "API key check"),
    }
}

/// Checks of the same session in one group (a client's concurrent requests with one access
/// token) are read once: each is answered by the same read, which started after all of them
/// were queued.
fn answer_sqlite(readers: &SqliteReaders, checks: Vec<Check>) {
    let (keys, slots) = distinct(checks.iter().map(|c| c.query));
    match readers.session_users(&keys) {
        Ok(users) => {
            for (check, slot) in checks.into_iter().zip(slots) {
                let _ = check.reply.send(Ok(users[slot].clone()));
            }
        }
        Err(err) => batch::fail_all(checks, &err, "session check"),
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

async fn answer_postgres(checkers: Arc<PgCheckers>, checks: Vec<Check>) {
    let mut ids: Vec<Uuid> = checks.iter().map(|c| c.query.0).collect();
    ids.sort_unstable();
    ids.dedup();
    match checkers.session_users(&ids).await {
        Ok(rows) => {
            let by_session: HashMap<Uuid, User> = rows.into_iter().collect();
            for check in checks {
                let (session_id, user_id) = check.query;
                let user = by_session
                    .get(&session_id)
                    .filter(|user| user.id == user_id)
                    .cloned();
                let _ = check.reply.send(Ok(user));
            }
        }
        Err(err) => batch::fail_all(checks, &err, "session check"),
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
