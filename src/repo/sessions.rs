use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    batch,
    events::{execute_recording, insert_event},
    rows, with_pool, Db, Repo, RepoResult,
};
use crate::domain::{NewEvent, SessionInfo, User};

/// A session to open, with the hash of its first refresh token (generation 0).
#[derive(Debug)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub token_hash: &'a [u8],
    pub now: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A presented refresh token, with the state of its session and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub session_id: Uuid,
    /// The generation of the presented token.
    pub token_generation: i64,
    /// The generation of the session's current token.
    pub current_generation: i64,
    pub user_id: Uuid,
    pub username: String,
    pub rotated_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Moves a session from `from_generation` to the next, whose token hash is `new_token_hash`.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub session_id: Uuid,
    pub from_generation: i64,
    pub new_token_hash: [u8; 32],
    pub now: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
}

/// A refresh token by hash, with its session and user ([`rows::refresh_record`]).
pub(super) const FIND_REFRESH: &str =
    "SELECT t.session_id, t.generation, s.generation, s.user_id, u.username, s.rotated_at, \
     s.idle_expires_at, s.expires_at, s.revoked_at, u.disabled_at \
     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id \
     WHERE t.token_hash = $1";

/// The live sessions among `$1` (an array) whose owner is enabled, with the owner
/// ([`rows::session_user`]): the per-request revocation check on PostgreSQL, for a group of
/// requests in one statement. (On SQLite, [`super::sqlite_reader`] asks per session.)
pub(super) const SESSION_USERS: &str =
    "SELECT s.id, u.id, u.username, u.email, u.full_name, u.created_at, u.email_verified \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id = ANY($1) AND s.revoked_at IS NULL AND u.disabled_at IS NULL";

/// One session check on SQLite: the session `$1`, if live and owned by `$2`, an enabled user,
/// with its owner ([`rows::session_user`]).
pub(super) const SESSION_USER: &str =
    "SELECT s.id, u.id, u.username, u.email, u.full_name, u.created_at, u.email_verified \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND u.disabled_at IS NULL";

impl Repo {
    /// Opens a session and stores its first refresh token (one statement, whose trigger
    /// records the token in `refresh_tokens`), and records `event`, in one transaction. With
    /// `challenge`, the login's MFA challenge of that hash is consumed in it too, and nothing
    /// is written (`false`) if it is gone: a challenge opens one session at most.
    pub async fn create_session(
        &self,
        s: &NewSession<'_>,
        event: &NewEvent<'_>,
        challenge: Option<&[u8]>,
    ) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            if let Some(token_hash) = challenge {
                let consumed = sqlx::query("DELETE FROM mfa_challenges WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if consumed != 1 {
                    return Ok(false);
                }
            }
            sqlx::query(
                "INSERT INTO sessions (id, user_id, generation, token_hash, created_at, last_used_at, \
                 rotated_at, idle_expires_at, expires_at, ip, user_agent) \
                 VALUES ($1, $2, 0, $3, $4, $4, $4, $5, $6, $7, $8)",
            )
            .bind(s.id)
            .bind(s.user_id)
            .bind(s.token_hash)
            .bind(s.now)
            .bind(s.idle_expires_at)
            .bind(s.expires_at)
            .bind(s.ip)
            .bind(s.user_agent)
            .execute(&mut *tx)
            .await?;
            insert_event!(&mut *tx, event);
            tx.commit().await?;
        });
        Ok(true)
    }

    /// A presented refresh token, by hash, with the state of its session and user. On SQLite
    /// it is read on the calling thread through a direct connection.
    pub async fn find_refresh(&self, token_hash: &[u8]) -> RepoResult<Option<RefreshRecord>> {
        match self.db() {
            Db::Sqlite(_) => self.sqlite_readers().find_refresh(token_hash),
            Db::Postgres(pool) => sqlx::query(FIND_REFRESH)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::refresh_record(&row))
                .transpose(),
        }
    }

    /// Moves a session on to its next refresh token if, and only if, its current generation
    /// is still `rotation.from_generation` and it is not revoked: of many concurrent rotations
    /// of one token exactly one wins (`true`). Concurrent rotations of different sessions
    /// share one statement ([`rotate_group`]).
    pub async fn rotate(&self, rotation: Rotation) -> RepoResult<bool> {
        batch::ask(self.rotations(), rotation).await
    }

    /// The user behind a session, if the session is live, belongs to `user_id`, and the
    /// account is enabled: the per-request revocation check. Concurrent checks share one
    /// read (see [`super::checks`]).
    pub async fn session_user(&self, session_id: Uuid, user_id: Uuid) -> RepoResult<Option<User>> {
        batch::ask(self.checks(), (session_id, user_id)).await
    }

    /// Ends one session if it is live (not ended, not expired), recording `event` with it.
    /// Returns whether this call ended it: of concurrent calls, one gets `true`.
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        let ended = with_pool!(self.db(), pool => {
            execute_recording!(
                pool,
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
                     WHERE id = $3 AND revoked_at IS NULL AND idle_expires_at > $1 AND expires_at > $1",
                )
                .bind(now)
                .bind(reason)
                .bind(session_id),
                event
            )
        });
        Ok(ended == 1)
    }

    /// Ends every live session of a user, recording `event` if any was; returns how many.
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<u64> {
        let ended = with_pool!(self.db(), pool => {
            execute_recording!(
                pool,
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
                     WHERE user_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(user_id),
                event
            )
        });
        Ok(ended)
    }
}

impl Repo {
    /// The user's live sessions (not ended, not expired), newest first.
    pub async fn live_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> RepoResult<Vec<SessionInfo>> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "SELECT id, created_at, last_used_at, ip, user_agent FROM sessions \
                 WHERE user_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 \
                 AND expires_at > $2 ORDER BY created_at DESC, id",
            )
            .bind(user_id)
            .bind(now)
            .fetch_all(pool)
            .await?
            .iter()
            .map(super::rows::session_info)
            .collect()
        })
    }

    /// Ends one of the user's live sessions, recording `event` with it; `false` if the user
    /// has no such live session.
    pub async fn revoke_own_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            execute_recording!(
                pool,
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $1, revoke_reason = 'revoked_by_user' \
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL \
                     AND idle_expires_at > $1 AND expires_at > $1",
                )
                .bind(now)
                .bind(session_id)
                .bind(user_id),
                event
            )
        });
        Ok(n == 1)
    }

    /// Deletes sessions idle-expired before `before`, with their refresh-token hashes (the
    /// foreign key cascades), in batches so that no statement holds the database for long.
    /// Returns how many sessions went.
    pub async fn prune_sessions(&self, before: DateTime<Utc>) -> RepoResult<u64> {
        self.delete_in_batches(
            "DELETE FROM sessions WHERE id IN \
             (SELECT id FROM sessions WHERE idle_expires_at < $1 LIMIT $2)",
            before,
        )
        .await
    }
}

/// Applies rotations of distinct sessions as one statement (see [`Repo::rotate`]); a trigger
/// records each new token in `refresh_tokens` within the same statement. Returns the
/// sessions whose rotation won.
pub(super) async fn rotate_group(db: &Db, rotations: &[Rotation]) -> RepoResult<Vec<Uuid>> {
    let sql = rotation_statement(db, rotations.len());
    let won = with_pool!(db, pool => {
        let mut query = sqlx::query_scalar::<_, Uuid>(&sql);
        for r in rotations {
            query = query
                .bind(r.session_id)
                .bind(r.from_generation)
                .bind(&r.new_token_hash[..])
                .bind(r.now)
                .bind(r.idle_expires_at);
        }
        query.fetch_all(pool).await?
    });
    Ok(won)
}

/// [`SESSION_USERS`] on any PostgreSQL connection.
pub(super) async fn pg_session_users<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    session_ids: &[Uuid],
) -> RepoResult<Vec<(Uuid, User)>> {
    sqlx::query(SESSION_USERS)
        .bind(session_ids)
        .fetch_all(executor)
        .await?
        .iter()
        .map(rows::session_user)
        .collect()
}

/// `UPDATE sessions ... FROM (VALUES ...)` for `n` rotations of five parameters each, in
/// [`Rotation`]'s field order. SQLite names the columns of a `VALUES` list `column1`...;
/// PostgreSQL needs their types, and names them the same way here.
fn rotation_statement(db: &Db, n: usize) -> String {
    let postgres = matches!(db, Db::Postgres(_));
    let casts = [
        "::uuid",
        "::bigint",
        "::bytea",
        "::timestamptz",
        "::timestamptz",
    ];
    let mut values = String::new();
    for row in 0..n {
        values.push_str(if row == 0 { "(" } else { ", (" });
        for (column, cast) in casts.iter().enumerate() {
            if column > 0 {
                values.push_str(", ");
            }
            let cast = if postgres { *cast } else { "" };
            values.push_str(&format!("${}{cast}", row * casts.len() + column + 1));
        }
        values.push(')');
    }
    let columns = if postgres {
        "v(column1, column2, column3, column4, column5)"
    } else {
        "v"
    };
    format!(
        "UPDATE sessions SET generation = sessions.generation + 1, token_hash = v.column3, \
         rotated_at = v.column4, last_used_at = v.column4, idle_expires_at = v.column5 \
         FROM (VALUES {values}) AS {columns} \
         WHERE sessions.id = v.column1 AND sessions.generation = v.column2 \
         AND sessions.revoked_at IS NULL RETURNING sessions.id"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;

    /// The statistics of a large table once led SQLite to scan every session for each group
    /// of rotations; each must be a lookup by id.
    #[tokio::test]
    async fn grouped_rotations_look_sessions_up_by_id_on_a_large_sqlite_table() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let repo = Repo::connect(&DatabaseUrl::parse(&url).unwrap())
            .await
            .unwrap();
        let db = repo.db();
        let Db::Sqlite(pool) = db else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        // What ANALYZE records for 100k users with one session each.
        sqlx::raw_sql(
            "ANALYZE; DELETE FROM sqlite_stat1; \
             INSERT INTO sqlite_stat1 VALUES \
             ('sessions', 'sqlite_autoindex_sessions_1', '100000 1'), \
             ('sessions', 'sessions_user_id_idx', '100000 1'), \
             ('users', 'sqlite_autoindex_users_1', '100001 1'); \
             ANALYZE sqlite_schema;",
        )
        .execute(pool)
        .await
        .unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", rotation_statement(db, 4));
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&sql);
        for _ in 0..20 {
            query = query.bind(None::<i64>);
        }
        let plan: Vec<String> = query
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH sessions USING")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN sessions")),
            "{plan:?}"
        );
    }
}
