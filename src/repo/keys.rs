use chrono::{DateTime, Utc};

use super::{with_pool, Db, RepoResult};

/// A signing key as stored. The private key is PKCS#8 DER; it never leaves the process.
#[derive(Clone, sqlx::FromRow)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Returns the server secret called `name`, storing `candidate` first if there is none.
    /// Replicas starting together all end up with the one value that was stored first.
    pub async fn server_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: DateTime<Utc>,
    ) -> RepoResult<Vec<u8>> {
        let secret = with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, Vec<u8>>("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
        })?;
        Ok(secret)
    }

    /// Stores `candidate` as the active signing key unless one is active already (the partial
    /// unique index allows one), then returns every key, the active one first.
    pub async fn signing_keys_or_insert(
        &self,
        candidate: &StoredSigningKey,
    ) -> RepoResult<Vec<StoredSigningKey>> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, active, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&candidate.kid)
            .bind(&candidate.algorithm)
            .bind(&candidate.private_key)
            .bind(&candidate.public_key)
            .bind(candidate.active)
            .bind(candidate.created_at)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        self.signing_keys().await
    }

    pub async fn signing_keys(&self) -> RepoResult<Vec<StoredSigningKey>> {
        let keys = with_pool!(self, pool => {
            sqlx::query_as::<_, StoredSigningKey>(
                "SELECT kid, algorithm, private_key, public_key, active, created_at FROM signing_keys \
                 ORDER BY active DESC, created_at DESC",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(keys)
    }
}
