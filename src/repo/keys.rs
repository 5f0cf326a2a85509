use chrono::{DateTime, Utc};

use super::{rows, with_pool, Repo, RepoResult};
use crate::domain::StoredSigningKey;

impl Repo {
    /// Returns the server secret called `name`, storing `candidate` first if there is none.
    /// Replicas starting together all end up with the one value that was stored first.
    pub async fn server_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: DateTime<Utc>,
    ) -> RepoResult<Vec<u8>> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(candidate)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(sqlx::query_scalar::<_, Vec<u8>>("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await?)
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
            .await?;
        });
        self.signing_keys().await
    }

    pub async fn signing_keys(&self) -> RepoResult<Vec<StoredSigningKey>> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "SELECT kid, algorithm, private_key, public_key, active, created_at \
                 FROM signing_keys ORDER BY active DESC, created_at DESC",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(rows::signing_key)
            .collect()
        })
    }
}
