//! Signing keys and server secrets, and the sealing of every stored secret (those and the
//! TOTP secrets) anew. Values come and go as stored (sealed or not); sealing and opening
//! them is the caller's (see `crate::auth::sealing`).

use chrono::{DateTime, Utc};

use sqlx::Connection as _;

use super::{rows, with_pool, Db, Repo, RepoError, RepoResult};
use crate::domain::{StoredSecret, StoredSigningKey};

const SIGNING_KEYS: &str =
    "SELECT kid, algorithm, private_key, public_key, active, created_at, sealed, retired_at \
     FROM signing_keys ORDER BY active DESC, created_at DESC";
const SERVER_SECRETS: &str = "SELECT name, secret, sealed FROM server_secrets ORDER BY name";

/// A new value for a stored secret: its row, what it was (so that a concurrent change is not
/// overwritten), and what it becomes.
#[derive(Debug)]
pub enum Resealed<'a> {
    SigningKey {
        kid: &'a str,
        was: &'a [u8],
        private_key: Vec<u8>,
        sealed: bool,
    },
    ServerSecret {
        name: &'a str,
        was: &'a [u8],
        secret: Vec<u8>,
        sealed: bool,
    },
    TotpSecret {
        user_id: uuid::Uuid,
        was: &'a [u8],
        secret: Vec<u8>,
        sealed: bool,
    },
}

/// Runs [`Repo::reseal`]'s updates in the transaction `$tx`, failing if any row changed.
macro_rules! write_resealed {
    ($tx:ident, $updates:expr) => {
        for update in $updates {
            let done = match update {
                Resealed::SigningKey {
                    kid,
                    was,
                    private_key,
                    sealed,
                } => {
                    sqlx::query(
                        "UPDATE signing_keys SET private_key = $1, sealed = $2 \
                         WHERE kid = $3 AND private_key = $4",
                    )
                    .bind(private_key)
                    .bind(sealed)
                    .bind(kid)
                    .bind(was)
                    .execute(&mut *$tx)
                    .await?
                }
                Resealed::ServerSecret {
                    name,
                    was,
                    secret,
                    sealed,
                } => {
                    sqlx::query(
                        "UPDATE server_secrets SET secret = $1, sealed = $2 \
                         WHERE name = $3 AND secret = $4",
                    )
                    .bind(secret)
                    .bind(sealed)
                    .bind(name)
                    .bind(was)
                    .execute(&mut *$tx)
                    .await?
                }
                Resealed::TotpSecret {
                    user_id,
                    was,
                    secret,
                    sealed,
                } => {
                    sqlx::query(
                        "UPDATE totp_factors SET secret = $1, sealed = $2 \
                         WHERE user_id = $3 AND secret = $4",
                    )
                    .bind(secret)
                    .bind(sealed)
                    .bind(user_id)
                    .bind(was)
                    .execute(&mut *$tx)
                    .await?
                }
            };
            if done.rows_affected() != 1 {
                return Err(RepoError::unavailable(
                    "a stored secret changed while it was being sealed",
                ));
            }
        }
    };
}

impl Repo {
    /// Returns the server secret called `name`, storing `candidate` first if there is none.
    /// Replicas starting together all end up with the one value that was stored first.
    pub async fn server_secret(
        &self,
        candidate: &StoredSecret,
        now: DateTime<Utc>,
    ) -> RepoResult<StoredSecret> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO server_secrets (name, secret, sealed, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&candidate.name)
            .bind(&candidate.secret)
            .bind(candidate.sealed)
            .bind(now)
            .execute(pool)
            .await?;
            rows::server_secret(
                &sqlx::query("SELECT name, secret, sealed FROM server_secrets WHERE name = $1")
                    .bind(&candidate.name)
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// Stores `candidate` as the active signing key unless one is active already (the partial
    /// unique index allows one), then returns every key, the active one first.
    pub async fn signing_keys_or_insert(
        &self,
        candidate: &StoredSigningKey,
    ) -> RepoResult<Vec<StoredSigningKey>> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, active, created_at, sealed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(&candidate.kid)
            .bind(&candidate.algorithm)
            .bind(&candidate.private_key)
            .bind(&candidate.public_key)
            .bind(candidate.active)
            .bind(candidate.created_at)
            .bind(candidate.sealed)
            .execute(pool)
            .await?;
        });
        self.signing_keys().await
    }

    /// Makes `new` the active signing key and retires the one active until now, at `now`, in
    /// one transaction.
    pub async fn rotate_signing_key(
        &self,
        new: &StoredSigningKey,
        now: DateTime<Utc>,
    ) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            sqlx::query("UPDATE signing_keys SET active = FALSE, retired_at = $1 WHERE active")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, active, created_at, sealed) \
                 VALUES ($1, $2, $3, $4, TRUE, $5, $6)",
            )
            .bind(&new.kid)
            .bind(&new.algorithm)
            .bind(&new.private_key)
            .bind(&new.public_key)
            .bind(now)
            .bind(new.sealed)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every signing key, the active one first, then the newest.
    pub async fn signing_keys(&self) -> RepoResult<Vec<StoredSigningKey>> {
        with_pool!(self.db(), pool => {
            sqlx::query(SIGNING_KEYS)
                .fetch_all(pool)
                .await?
                .iter()
                .map(rows::signing_key)
                .collect()
        })
    }

    pub async fn server_secrets(&self) -> RepoResult<Vec<StoredSecret>> {
        with_pool!(self.db(), pool => {
            sqlx::query(SERVER_SECRETS)
                .fetch_all(pool)
                .await?
                .iter()
                .map(rows::server_secret)
                .collect()
        })
    }

    /// Writes every new value in one transaction: all or none. A row that changed since it
    /// was read fails the whole (as unavailable: reading again and retrying is the cure). On
    /// SQLite the old values' bytes are zeroed in the file (`secure_delete`) and the WAL is
    /// emptied into it, so that no copy in clear stays behind.
    pub async fn reseal(&self, updates: &[Resealed<'_>]) -> RepoResult<()> {
        match self.db() {
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA secure_delete = ON")
                    .execute(&mut *conn)
                    .await?;
                let written = async {
                    let mut tx = conn.begin().await?;
                    write_resealed!(tx, updates);
                    tx.commit().await?;
                    RepoResult::Ok(())
                }
                .await;
                let checkpoint = match written {
                    Ok(()) => sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .execute(&mut *conn)
                        .await
                        .map(|_| ())
                        .map_err(RepoError::from),
                    Err(e) => Err(e),
                };
                sqlx::query("PRAGMA secure_delete = OFF")
                    .execute(&mut *conn)
                    .await?;
                checkpoint
            }
            Db::Postgres(pool) => {
                let mut tx = super::begin(pool).await?;
                write_resealed!(tx, updates);
                tx.commit().await?;
                Ok(())
            }
        }
    }
}
