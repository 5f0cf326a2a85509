use chrono::{DateTime, Utc};

use super::{with_pool, Repo, RepoResult};

impl Repo {
    /// The failure record of this name: `None` if it has no failures counted, else until
    /// when its logins are locked, if they are.
    pub async fn login_throttle(&self, name: &str) -> RepoResult<Option<Option<DateTime<Utc>>>> {
        let record = with_pool!(self.db(), pool => {
            sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
                "SELECT locked_until FROM login_throttle WHERE username_normalized = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await
        })?;
        Ok(record)
    }

    /// Counts one more consecutive failure for this name (atomically, so concurrent failures
    /// all count) and returns the new count.
    pub async fn record_login_failure(&self, name: &str, now: DateTime<Utc>) -> RepoResult<i64> {
        let failures = with_pool!(self.db(), pool => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO login_throttle (username_normalized, failures, updated_at) VALUES ($1, 1, $2) \
                 ON CONFLICT (username_normalized) DO UPDATE \
                 SET failures = login_throttle.failures + 1, updated_at = $2 \
                 RETURNING failures",
            )
            .bind(name)
            .bind(now)
            .fetch_one(pool)
            .await
        })?;
        Ok(failures)
    }

    pub async fn lock_logins(&self, name: &str, until: DateTime<Utc>) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE username_normalized = $2")
                .bind(until)
                .bind(name)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// A successful login starts the count afresh.
    pub async fn clear_login_failures(&self, name: &str) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query("DELETE FROM login_throttle WHERE username_normalized = $1")
                .bind(name)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Whether this user has logged in from `ip` since `since`: such a client may still try
    /// while the account is locked, so that an attacker elsewhere cannot lock the owner out.
    pub async fn has_logged_in_from(
        &self,
        name: &str,
        ip: &str,
        since: DateTime<Utc>,
    ) -> RepoResult<bool> {
        let found = with_pool!(self.db(), pool => {
            // i32: a literal 1 is INT4 on Postgres.
            sqlx::query_scalar::<_, i32>(
                "SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE u.username_normalized = $1 AND s.ip = $2 AND s.created_at > $3 LIMIT 1",
            )
            .bind(name)
            .bind(ip)
            .bind(since)
            .fetch_optional(pool)
            .await
        })?;
        Ok(found.is_some())
    }

    /// Forgets failure counts untouched since `before`.
    pub async fn prune_login_failures(&self, before: DateTime<Utc>) -> RepoResult<u64> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query("DELETE FROM login_throttle WHERE updated_at < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }
}
