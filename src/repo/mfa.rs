//! The TOTP second factor: each user's factor (secret stored as the caller gives it, sealed or
//! not), recovery codes by hash, and the challenges of logins waiting for a code.
//!
//! Every acceptance is a compare-and-set, so that of two replicas presented the same code at
//! the same moment only one accepts it: a time step only moves forward, a recovery code is
//! used once, a challenge is consumed once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{events::insert_event, rows, with_pool, Repo, RepoResult};
use crate::domain::{NewEvent, StoredTotp, User};

/// The columns [`rows::stored_totp`] reads.
pub(super) const TOTP_COLUMNS: &str = "user_id, secret, sealed, confirmed_at, last_step";

/// A login waiting for its second factor.
#[derive(Debug)]
pub struct NewChallenge<'a> {
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    /// The throttle subject the login was counted on; wrong codes count there too.
    pub subject: &'a str,
    pub device_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

/// A live challenge, with its enabled user.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub subject: String,
    pub device_id: Option<Uuid>,
    pub user: User,
}

impl Repo {
    /// The user's factor, confirmed or not.
    pub async fn totp_factor(&self, user_id: Uuid) -> RepoResult<Option<StoredTotp>> {
        let sql = format!("SELECT {TOTP_COLUMNS} FROM totp_factors WHERE user_id = $1");
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::stored_totp(&row))
                .transpose()
        })
    }

    /// Every factor, for sealing their secrets anew.
    pub async fn totp_factors(&self) -> RepoResult<Vec<StoredTotp>> {
        let sql = format!("SELECT {TOTP_COLUMNS} FROM totp_factors ORDER BY user_id");
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(rows::stored_totp)
                .collect()
        })
    }

    /// Starts an enrolment with `secret`, replacing one not yet confirmed; `false` (and
    /// nothing written) if the user's factor is already confirmed.
    pub async fn begin_totp(
        &self,
        user_id: Uuid,
        secret: &[u8],
        sealed: bool,
        now: DateTime<Utc>,
    ) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query(
                "INSERT INTO totp_factors (user_id, secret, sealed, created_at, confirmed_at, last_step) \
                 VALUES ($1, $2, $3, $4, NULL, 0) \
                 ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                 sealed = excluded.sealed, created_at = excluded.created_at, last_step = 0 \
                 WHERE totp_factors.confirmed_at IS NULL",
            )
            .bind(user_id)
            .bind(secret)
            .bind(sealed)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Confirms the pending enrolment whose stored secret is still `secret` (a newer
    /// enrolment is not confirmed by a code of the older one), accepting `step`, and replaces
    /// the user's recovery codes with `code_hashes`; records `event`. All in one transaction;
    /// `false` (nothing written) if there is no such pending enrolment.
    pub async fn confirm_totp(
        &self,
        user_id: Uuid,
        secret: &[u8],
        step: i64,
        code_hashes: &[[u8; 32]],
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let confirmed = sqlx::query(
                "UPDATE totp_factors SET confirmed_at = $1, last_step = $2 \
                 WHERE user_id = $3 AND secret = $4 AND confirmed_at IS NULL",
            )
            .bind(now)
            .bind(step)
            .bind(user_id)
            .bind(secret)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if confirmed != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for hash in code_hashes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(&hash[..])
                    .execute(&mut *tx)
                    .await?;
            }
            insert_event!(&mut *tx, event);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Accepts a code of time step `step` for the user's confirmed factor if, and only if, no
    /// code of that step or a later one was accepted before: `true` once per step.
    pub async fn accept_totp_step(&self, user_id: Uuid, step: i64) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query(
                "UPDATE totp_factors SET last_step = $1 \
                 WHERE user_id = $2 AND last_step < $1 AND confirmed_at IS NOT NULL",
            )
            .bind(step)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Uses up one of the user's recovery codes: `true` once per code.
    pub async fn use_recovery_code(
        &self,
        user_id: Uuid,
        code_hash: &[u8],
        now: DateTime<Utc>,
    ) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 \
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(code_hash)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// How many of the user's recovery codes are left.
    pub async fn recovery_codes_left(&self, user_id: Uuid) -> RepoResult<i64> {
        with_pool!(self.db(), pool => {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            )
            .bind(user_id)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Removes the user's factor, its recovery codes and pending challenges, recording
    /// `event`, in one transaction; `false` if the user had no factor.
    pub async fn remove_totp(&self, user_id: Uuid, event: &NewEvent<'_>) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let removed = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed == 0 {
                return Ok(false);
            }
            for table in ["recovery_codes", "mfa_challenges"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_event!(&mut *tx, event);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Stores a login's challenge and records `event`, in one transaction.
    pub async fn insert_challenge(
        &self,
        challenge: &NewChallenge<'_>,
        event: &NewEvent<'_>,
    ) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            sqlx::query(
                "INSERT INTO mfa_challenges (token_hash, user_id, subject, device_id, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(challenge.token_hash)
            .bind(challenge.user_id)
            .bind(challenge.subject)
            .bind(challenge.device_id)
            .bind(challenge.expires_at)
            .execute(&mut *tx)
            .await?;
            insert_event!(&mut *tx, event);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The challenge with this token hash, unless it has expired, was consumed, or its user
    /// is disabled.
    pub async fn challenge(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> RepoResult<Option<Challenge>> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "SELECT c.subject, c.device_id, u.id, u.username, u.email, u.full_name, u.created_at, u.email_verified \
                 FROM mfa_challenges c JOIN users u ON u.id = c.user_id \
                 WHERE c.token_hash = $1 AND c.expires_at > $2 AND u.disabled_at IS NULL",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
            .map(|row| rows::challenge(&row))
            .transpose()
        })
    }

    /// Deletes challenges that expired before `before`; returns how many.
    pub async fn prune_challenges(&self, before: DateTime<Utc>) -> RepoResult<u64> {
        self.delete_in_batches(
            "DELETE FROM mfa_challenges WHERE token_hash IN \
             (SELECT token_hash FROM mfa_challenges WHERE expires_at < $1 LIMIT $2)",
            before,
        )
        .await
    }
}
