//! Dedicated PostgreSQL connections for the per-request session check.
//!
//! Through the pool, each group of checks would cost three round trips: sqlx pings a
//! connection when it is acquired and again when it is released, around the one query that
//! matters. These connections belong to the session-check dispatcher alone and are used as
//! they are. One that fails or times out is dropped, and the next group opens a new one.

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{batch::STATEMENT_TIMEOUT, sessions::SessionUser, RepoError, RepoResult};
use crate::domain::User;

/// The live sessions among the given ids, with their users; one statement whatever the
/// number of ids.
const SESSION_USERS: &str =
    "SELECT s.id AS session_id, u.id, u.username, u.email, u.full_name, u.created_at \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id = ANY($1) AND s.revoked_at IS NULL AND u.disabled_at IS NULL";

pub struct PgCheckers {
    options: PgConnectOptions,
    connections: Vec<Mutex<Option<PgConnection>>>,
}

impl std::fmt::Debug for PgCheckers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCheckers")
            .field("connections", &self.connections.len())
            .finish()
    }
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

    /// For each live session among `session_ids`: its id, its owner's id and the owner.
    pub async fn session_users(
        &self,
        session_ids: &[Uuid],
    ) -> RepoResult<Vec<(Uuid, (Uuid, User))>> {
        let mut slot = self.slot().await;
        let work = async {
            let connection = match slot.as_mut() {
                Some(connection) => connection,
                None => slot.insert(self.options.connect().await?),
            };
            sqlx::query_as::<_, SessionUser>(SESSION_USERS)
                .bind(session_ids)
                .fetch_all(connection)
                .await
        };
        let rows = match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(Ok(rows)) => rows,
            // A connection that failed, or was left mid-statement, is not used again.
            Ok(Err(err)) => {
                *slot = None;
                return Err(err.into());
            }
            Err(_) => {
                *slot = None;
                return Err(RepoError::Shared { unavailable: true });
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| (r.session_id, (r.user.id, r.user)))
            .collect())
    }
}
