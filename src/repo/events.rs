//! The audit trail: each event is written by the statement's own transaction where it records
//! a change ([`insert_event!`]), and listed a page at a time, newest first.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{rows, with_pool, Repo, RepoResult};
use crate::domain::{Event, NewEvent};

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO events (id, user_id, type, at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6)";

/// Inserts `$event` ([`NewEvent`]) through `$executor` (a transaction or a pool).
macro_rules! insert_event {
    ($executor:expr, $event:expr) => {{
        let event: &$crate::domain::NewEvent<'_> = $event;
        sqlx::query($crate::repo::events::INSERT_EVENT)
            .bind(uuid::Uuid::now_v7())
            .bind(event.user_id)
            .bind(event.kind.as_str())
            .bind(event.at)
            .bind(event.ip)
            .bind(event.user_agent)
            .execute($executor)
            .await?
    }};
}
pub(super) use insert_event;

/// Runs `$statement` (a `sqlx::query(...)` with its binds, not yet executed) in a transaction
/// on `$pool`, records `$event` in it if the statement changed any row, and commits: the
/// change and its event are written together or not at all. Evaluates to the rows changed.
macro_rules! execute_recording {
    ($pool:expr, $statement:expr, $event:expr) => {{
        let mut tx = $crate::repo::begin($pool).await?;
        let changed = $statement.execute(&mut *tx).await?.rows_affected();
        if changed > 0 {
            $crate::repo::events::insert_event!(&mut *tx, $event);
        }
        tx.commit().await?;
        changed
    }};
}
pub(super) use execute_recording;

impl Repo {
    /// Records an event that goes with no other write (a failed login).
    pub async fn record_event(&self, event: &NewEvent<'_>) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            insert_event!(pool, event);
        });
        Ok(())
    }

    /// Up to `limit` of the user's events older than the event `before` (all, if `None`),
    /// newest first.
    pub async fn events(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> RepoResult<Vec<Event>> {
        // The maximal UUID stands for "no bound": every UUIDv7 sorts below it.
        let before = before.unwrap_or(Uuid::max());
        with_pool!(self.db(), pool => {
            sqlx::query(
                "SELECT id, type, at, ip, user_agent FROM events \
                 WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(user_id)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(rows::event)
            .collect()
        })
    }

    /// Deletes events recorded before `before`; returns how many.
    pub async fn prune_events(&self, before: DateTime<Utc>) -> RepoResult<u64> {
        self.delete_in_batches(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2)",
            before,
        )
        .await
    }
}
