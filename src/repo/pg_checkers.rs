//! Dedicated PostgreSQL connections for the per-request checks of sessions and API keys.
//!
//! Through the pool, each group of checks would cost three round trips: sqlx pings a
//! connection when it is acquired and again when it is released, around the one query that
//! matters. These connections belong to the check dispatchers alone and are used as they
//! are. One that fails or times out is dropped, and the next group opens a new one.

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{
    api_keys::{pg_key_users, KeyUser},
    batch,
    sessions::pg_session_users,
    RepoResult,
};
use crate::domain::User;

/// Runs `$read` with `$connection` bound to one of `$checkers`' connections (opened if
/// needed) under the statement timeout. A connection that fails, or is left mid-statement,
/// is dropped. A kept connection that fails at once (the server closed it since: a restart,
/// a failover, an administrator's `pg_terminate_backend`) is replaced and the read made once
/// more: a read changes nothing, so repeating it is safe.
macro_rules! on_checker {
    ($checkers:expr, $connection:ident => $read:expr) => {{
        let checkers: &PgCheckers = $checkers;
        let mut slot = checkers.slot().await;
        let mut kept = slot.is_some();
        loop {
            let work = async {
                let $connection = match slot.as_mut() {
                    Some(connection) => connection,
                    None => slot.insert(checkers.options.connect().await?),
                };
                $read.await
            };
            let result = batch::with_timeout(work).await;
            match result {
                Err(e) => {
                    *slot = None;
                    if kept && !e.timed_out() {
                        kept = false;
                        continue;
                    }
                    break Err(e);
                }
                ok => break ok,
            }
        }
    }};
}

pub struct PgCheckers {
    options: PgConnectOptions,
    connections: Vec<Mutex<Option<PgConnection>>>,
}

impl PgCheckers {
    /// `count` connections, opened when first needed.
    pub fn new(options: PgConnectOptions, count: usize) -> Self {
        Self {
            options,
            connections: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A free connection slot if there is one, else waits for the first.
    async fn slot(&self) -> MutexGuard<'_, Option<PgConnection>> {
        for slot in &self.connections {
            if let Ok(slot) = slot.try_lock() {
                return slot;
            }
        }
        self.connections[0].lock().await
    }

    /// The live sessions among `session_ids`, with their owners, on one of these connections.
    pub async fn session_users(&self, session_ids: &[Uuid]) -> RepoResult<Vec<(Uuid, User)>> {
        on_checker!(self, connection => pg_session_users(connection, session_ids))
    }

    /// The live API keys among `hashes`, each with its hash and enabled user.
    pub async fn key_users(&self, hashes: &[Vec<u8>]) -> RepoResult<Vec<(Vec<u8>, KeyUser)>> {
        on_checker!(self, connection => pg_key_users(connection, hashes))
    }
}
