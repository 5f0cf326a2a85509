//! API keys: stored by hash, listed by user, revoked by id.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{
    batch,
    events::{execute_recording, insert_event},
    rows, with_pool, Repo, RepoResult,
};
use crate::domain::{ApiKeyInfo, NewEvent, User};

/// A key to store.
#[derive(Debug)]
pub struct NewApiKey<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key found by its hash (not revoked, its user enabled), with its user.
#[derive(Debug, Clone)]
pub struct KeyUser {
    pub key_id: Uuid,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub user: User,
}

/// A key by hash, unless revoked or its user disabled: `k.id, k.last_used_at, k.expires_at`,
/// then the user's columns ([`rows::key_user`]). Expiry is judged by the caller, so that the
/// statement binds nothing but the hash on either driver.
pub(super) const KEY_USER: &str =
    "SELECT k.id, k.last_used_at, k.expires_at, u.id, u.username, u.email, u.full_name, u.created_at, u.email_verified \
     FROM api_keys k JOIN users u ON u.id = k.user_id \
     WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL";

/// [`KEY_USER`] for a group of hashes on PostgreSQL, each row led by its hash
/// ([`rows::hashed_key_user`]).
const KEY_USERS: &str =
    "SELECT k.key_hash, k.id, k.last_used_at, k.expires_at, u.id, u.username, u.email, u.full_name, u.created_at, u.email_verified \
     FROM api_keys k JOIN users u ON u.id = k.user_id \
     WHERE k.key_hash = ANY($1) AND k.revoked_at IS NULL AND u.disabled_at IS NULL";

/// The live keys among `hashes` with their users, on `executor` (a check connection).
pub(super) async fn pg_key_users<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    hashes: &[Vec<u8>],
) -> RepoResult<Vec<(Vec<u8>, KeyUser)>> {
    sqlx::query(KEY_USERS)
        .bind(hashes)
        .fetch_all(executor)
        .await?
        .iter()
        .map(rows::hashed_key_user)
        .collect()
}

/// The columns [`rows::api_key_info`] reads.
const INFO_COLUMNS: &str = "id, name, prefix, created_at, last_used_at, expires_at";

/// How stale `last_used_at` may get: a key used all the time is written once a minute.
pub const LAST_USED_PRECISION: TimeDelta = TimeDelta::minutes(1);

impl Repo {
    /// Stores a key and records `event`, in one transaction.
    pub async fn insert_api_key(
        &self,
        key: &NewApiKey<'_>,
        event: &NewEvent<'_>,
    ) -> RepoResult<ApiKeyInfo> {
        let sql = format!(
            "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {INFO_COLUMNS}"
        );
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let info = rows::api_key_info(
                &sqlx::query(&sql)
                    .bind(key.id)
                    .bind(key.user_id)
                    .bind(key.name)
                    .bind(key.prefix)
                    .bind(key.key_hash)
                    .bind(key.created_at)
                    .bind(key.expires_at)
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            insert_event!(&mut *tx, event);
            tx.commit().await?;
            Ok(info)
        })
    }

    /// The user's keys that are neither revoked nor expired, newest first.
    pub async fn api_keys(&self, user_id: Uuid, now: DateTime<Utc>) -> RepoResult<Vec<ApiKeyInfo>> {
        let sql = format!(
            "SELECT {INFO_COLUMNS} FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id"
        );
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(user_id)
                .bind(now)
                .fetch_all(pool)
                .await?
                .iter()
                .map(rows::api_key_info)
                .collect()
        })
    }

    /// Revokes one of the user's live keys, recording `event` with it; `false` if the user
    /// has no such key.
    pub async fn revoke_api_key(
        &self,
        user_id: Uuid,
        key_id: Uuid,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            execute_recording!(
                pool,
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $1 \
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(key_id)
                .bind(user_id),
                event
            )
        });
        Ok(n == 1)
    }

    /// The live key with this hash and its enabled user; read on every request that presents
    /// a key, so that a revocation holds at once on every replica. Concurrent checks are
    /// grouped as the session checks are (see `super::checks`).
    pub async fn api_key_user(
        &self,
        key_hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> RepoResult<Option<KeyUser>> {
        let found = batch::ask(self.key_checks(), key_hash).await?;
        Ok(found.filter(|key| key.expires_at.is_none_or(|at| at > now)))
    }

    /// Records a use of the key, at most once per [`LAST_USED_PRECISION`].
    pub async fn touch_api_key(&self, key_id: Uuid, now: DateTime<Utc>) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(key_id)
            .bind(now - LAST_USED_PRECISION)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
