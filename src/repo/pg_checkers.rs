//! Dedicated PostgreSQL connections for the per-request session check.
//!
//! Through the pool, each group of checks would cost three round trips: sqlx pings a
//! connection when it is acquired and again when it is released, around the one query that
//! matters. These connections belong to the session-check dispatcher alone and are used as
//! they are. One that fails or times out is dropped, and the next group opens a new one.

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{batch, sessions::pg_session_users, RepoResult};
use crate::domain::User;

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
    /// A kept connection that fails at once (the server closed it since: a restart, a
    /// failover, an administrator's `pg_terminate_backend`) is replaced and the read made
    /// once more: a read changes nothing, so repeating it is safe.
    pub async fn session_users(&self, session_ids: &[Uuid]) -> RepoResult<Vec<(Uuid, User)>> {
        let mut slot = self.slot().await;
        let kept = slot.is_some();
        match self.read(&mut slot, session_ids).await {
            Err(e) if kept && !e.timed_out() => self.read(&mut slot, session_ids).await,
            result => result,
        }
    }

    async fn read(
        &self,
        slot: &mut Option<PgConnection>,
        session_ids: &[Uuid],
    ) -> RepoResult<Vec<(Uuid, User)>> {
        let work = async {
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(self.options.connect().await?),
            };
            pg_session_users(connection, session_ids).await
        };
        let result = batch::with_timeout(work).await;
        if result.is_err() {
            // A connection that failed, or was left mid-statement, is not used again.
            *slot = None;
        }
        result
    }
}
