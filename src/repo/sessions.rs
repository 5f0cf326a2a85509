use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{with_pool, Db, RepoResult};
use crate::domain::User;

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
#[derive(Debug, Clone, sqlx::FromRow)]
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
#[derive(Debug)]
pub struct Rotation<'a> {
    pub session_id: Uuid,
    pub from_generation: i64,
    pub new_token_hash: &'a [u8],
    pub now: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
}

impl Db {
    /// Opens a session and stores its first refresh token, atomically.
    pub async fn create_session(&self, s: &NewSession<'_>) -> RepoResult<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO sessions (id, user_id, generation, created_at, last_used_at, rotated_at, \
                 idle_expires_at, expires_at, ip, user_agent) VALUES ($1, $2, 0, $3, $3, $3, $4, $5, $6, $7)",
            )
            .bind(s.id)
            .bind(s.user_id)
            .bind(s.now)
            .bind(s.idle_expires_at)
            .bind(s.expires_at)
            .bind(s.ip)
            .bind(s.user_agent)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at) VALUES ($1, $2, 0, $3)",
            )
            .bind(s.token_hash)
            .bind(s.id)
            .bind(s.now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }

    pub async fn find_refresh(&self, token_hash: &[u8]) -> RepoResult<Option<RefreshRecord>> {
        let found = with_pool!(self, pool => {
            sqlx::query_as::<_, RefreshRecord>(
                "SELECT t.session_id, t.generation AS token_generation, s.generation AS current_generation, \
                 s.user_id, u.username, s.rotated_at, s.idle_expires_at, s.expires_at, s.revoked_at, u.disabled_at \
                 FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id \
                 WHERE t.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await
        })?;
        Ok(found)
    }

    /// Rotates a session's refresh token if, and only if, its current generation is still
    /// `from_generation` and it is not revoked: a single conditional update, so of many
    /// concurrent rotations of one token exactly one wins. Returns whether this one did.
    pub async fn rotate_refresh(&self, r: &Rotation<'_>) -> RepoResult<bool> {
        let won = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE sessions SET generation = generation + 1, rotated_at = $1, last_used_at = $1, \
                 idle_expires_at = $2 WHERE id = $3 AND generation = $4 AND revoked_at IS NULL",
            )
            .bind(r.now)
            .bind(r.idle_expires_at)
            .bind(r.session_id)
            .bind(r.from_generation)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(r.new_token_hash)
                .bind(r.session_id)
                .bind(r.from_generation + 1)
                .bind(r.now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(updated == 1)
        })?;
        Ok(won)
    }

    /// Ends one session. Returns false when it was already ended (or never existed).
    pub async fn revoke_session(
        &self,
        session_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> RepoResult<bool> {
        let n = with_pool!(self, pool => {
            sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(reason)
                .bind(session_id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Ends every live session of a user; returns how many were live.
    pub async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> RepoResult<u64> {
        let n = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    /// The user behind an access token, if its session is still live and the account enabled.
    /// This is the per-request revocation check: one primary-key lookup and one join.
    pub async fn session_user(&self, session_id: Uuid, user_id: Uuid) -> RepoResult<Option<User>> {
        let found = with_pool!(self, pool => {
            sqlx::query_as::<_, User>(
                "SELECT u.id, u.username, u.email, u.full_name, u.created_at FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND u.disabled_at IS NULL",
            )
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await
        })?;
        Ok(found)
    }
}
