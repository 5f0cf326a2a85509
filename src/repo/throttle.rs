//! Login attempts, counted per subject (a login name or a device cookie) before the password
//! is checked. The counting is one conditional statement, so that concurrent attempts, on
//! one replica or several, are each counted once and none slips past a lock.

use chrono::{DateTime, TimeZone, Utc};

use super::{with_pool, Db, Repo, RepoResult};

/// What counting an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted, as a failure until it succeeds: `failures` attempts since the last success,
    /// this one included. If that reached the rule's threshold the subject is now locked.
    Admitted { failures: i64 },
    /// Refused and not counted: the subject is locked until then.
    Locked { until: DateTime<Utc> },
}

/// When a subject is locked: from its `free`th failure on, for 1 s doubling with each
/// further failure, up to `max_secs`.
#[derive(Debug, Clone, Copy)]
pub struct LockRule {
    pub free: i64,
    pub max_secs: i64,
}

/// Counts one attempt unless the subject is locked. The first attempt inserts a row; later
/// ones add one and, from the rule's threshold on, set the lock to the later of its old end
/// and now plus the new delay. Parameters: subject, now (ms), free, max_secs.
const COUNT_SQLITE: &str =
    "INSERT INTO login_attempts (subject, failures, locked_until, updated_at) \
     VALUES ($1, 1, NULL, $2) \
     ON CONFLICT (subject) DO UPDATE SET \
     failures = login_attempts.failures + 1, \
     locked_until = CASE WHEN login_attempts.failures + 1 < $3 THEN login_attempts.locked_until \
         ELSE MAX(COALESCE(login_attempts.locked_until, 0), \
                  $2 + 1000 * MIN($4, 1 << MIN(login_attempts.failures + 1 - $3, 40))) END, \
     updated_at = $2 \
     WHERE login_attempts.locked_until IS NULL OR login_attempts.locked_until <= $2 \
     RETURNING failures";

/// [`COUNT_SQLITE`] in PostgreSQL's words (`GREATEST`, `LEAST`, a typed shift).
const COUNT_POSTGRES: &str = "INSERT INTO login_attempts (subject, failures, locked_until, updated_at) \
     VALUES ($1, 1, NULL, $2) \
     ON CONFLICT (subject) DO UPDATE SET \
     failures = login_attempts.failures + 1, \
     locked_until = CASE WHEN login_attempts.failures + 1 < $3 THEN login_attempts.locked_until \
         ELSE GREATEST(COALESCE(login_attempts.locked_until, 0), \
                  $2 + 1000 * LEAST($4, 1::bigint << LEAST(login_attempts.failures + 1 - $3, 40)::int)) END, \
     updated_at = $2 \
     WHERE login_attempts.locked_until IS NULL OR login_attempts.locked_until <= $2 \
     RETURNING failures";

const LOCKED_UNTIL: &str = "SELECT locked_until FROM login_attempts WHERE subject = $1";

impl Repo {
    /// Counts an attempt of `subject` at `now` under `rule`, or says until when it is locked.
    pub async fn count_attempt(
        &self,
        subject: &str,
        now: DateTime<Utc>,
        rule: LockRule,
    ) -> RepoResult<Attempt> {
        let now_ms = now.timestamp_millis();
        let count = match self.db() {
            Db::Sqlite(_) => COUNT_SQLITE,
            Db::Postgres(_) => COUNT_POSTGRES,
        };
        let counted = with_pool!(self.db(), pool => {
            sqlx::query_scalar::<_, i64>(count)
                .bind(subject)
                .bind(now_ms)
                .bind(rule.free)
                .bind(rule.max_secs)
                .fetch_optional(pool)
                .await?
        });
        if let Some(failures) = counted {
            return Ok(Attempt::Admitted { failures });
        }
        // Locked. (A success may have cleared the row since: then a wait of nothing.)
        let until = with_pool!(self.db(), pool => {
            sqlx::query_scalar::<_, Option<i64>>(LOCKED_UNTIL)
                .bind(subject)
                .fetch_optional(pool)
                .await?
        })
        .flatten()
        .unwrap_or(now_ms);
        Ok(Attempt::Locked {
            until: Utc.timestamp_millis_opt(until).single().unwrap_or(now),
        })
    }

    /// A success ends the subject's run of failures.
    pub async fn clear_attempts(&self, subject: &str) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query("DELETE FROM login_attempts WHERE subject = $1")
                .bind(subject)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets the counts of subjects untouched since `before` (any lock has ended by then).
    pub async fn prune_attempts(&self, before: DateTime<Utc>) -> RepoResult<u64> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query("DELETE FROM login_attempts WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $1)")
                .bind(before.timestamp_millis())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
