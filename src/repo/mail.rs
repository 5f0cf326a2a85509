//! E-mail tokens and the mail outbox.
//!
//! A token row and the outbox row of the mail that carries it are written by one transaction
//! ([`queue_mail!`]), together with the change that asked for them; senders claim due outbox
//! rows with a lease (on PostgreSQL with `FOR UPDATE SKIP LOCKED`), so that each mail goes
//! out once however many replicas send.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{events::insert_event, rows, with_pool, Db, Repo, RepoResult};
use crate::domain::{MailPurpose, NewEvent};

/// A token and the mail that carries it, to be written together.
#[derive(Debug)]
pub struct NewMail<'a> {
    pub token_id: Uuid,
    pub token_hash: &'a [u8],
    pub user_id: Uuid,
    pub purpose: MailPurpose,
    /// The address as the user wrote it, and its normalized form (what the cap counts by).
    pub recipient: &'a str,
    pub email: &'a str,
    /// The service's time: the token's start and end, and the window of the cap.
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The senders' wall-clock time: when the first attempt is due, and when to give up.
    pub send_at: DateTime<Utc>,
    pub give_up_at: DateTime<Utc>,
    /// Mails of this purpose to this address in the last hour beyond which none is written.
    pub hourly_cap: i64,
}

/// A mail claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub id: Uuid,
    /// `None` once its token was used or made void: the mail is no longer worth sending.
    pub token_id: Option<Uuid>,
    pub purpose: MailPurpose,
    pub recipient: String,
    pub give_up_at: DateTime<Utc>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// A live token found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    /// The normalized address the token was mailed to.
    pub email: String,
    /// The user's address now.
    pub user_email: Option<String>,
}

/// How an outbox row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailEnd {
    Sent,
    /// Refused for good, given up, or no longer worth sending.
    Failed,
}

/// Serialises the mails of one address on PostgreSQL, so that concurrent requests cannot
/// both pass the hourly cap. SQLite has one writer at a time already.
pub(super) const LOCK_ADDRESS_POSTGRES: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))";

pub(super) const COUNT_RECENT: &str = "SELECT COUNT(*) FROM mail_outbox \
     WHERE email = $1 AND purpose = $2 AND created_at > $3";
pub(super) const VOID_RESETS: &str =
    "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'reset'";
pub(super) const INSERT_TOKEN: &str = "INSERT INTO email_tokens \
     (id, user_id, purpose, token_hash, email, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(super) const INSERT_MAIL: &str = "INSERT INTO mail_outbox \
     (id, user_id, token_id, purpose, recipient, email, created_at, give_up_at, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// In the transaction `$tx` (on `$db`'s backend): writes the token and the mail of `$mail`
/// ([`NewMail`]) unless the address had its hourly cap of such mails; a reset token voids
/// the user's older ones. Evaluates to whether the mail was written.
macro_rules! queue_mail {
    ($db:expr, $tx:expr, $mail:expr) => {{
        let mail: &$crate::repo::mail::NewMail<'_> = $mail;
        if matches!($db, $crate::repo::Db::Postgres(_)) {
            sqlx::query($crate::repo::mail::LOCK_ADDRESS_POSTGRES)
                .bind(mail.email)
                .execute(&mut *$tx)
                .await?;
        }
        let recent: i64 = sqlx::query_scalar($crate::repo::mail::COUNT_RECENT)
            .bind(mail.email)
            .bind(mail.purpose.as_str())
            .bind(mail.now - chrono::TimeDelta::hours(1))
            .fetch_one(&mut *$tx)
            .await?;
        if recent >= mail.hourly_cap {
            false
        } else {
            if mail.purpose == $crate::domain::MailPurpose::PasswordReset {
                sqlx::query($crate::repo::mail::VOID_RESETS)
                    .bind(mail.user_id)
                    .execute(&mut *$tx)
                    .await?;
            }
            sqlx::query($crate::repo::mail::INSERT_TOKEN)
                .bind(mail.token_id)
                .bind(mail.user_id)
                .bind(mail.purpose.as_str())
                .bind(mail.token_hash)
                .bind(mail.email)
                .bind(mail.now)
                .bind(mail.expires_at)
                .execute(&mut *$tx)
                .await?;
            sqlx::query($crate::repo::mail::INSERT_MAIL)
                .bind(uuid::Uuid::now_v7())
                .bind(mail.user_id)
                .bind(mail.token_id)
                .bind(mail.purpose.as_str())
                .bind(mail.recipient)
                .bind(mail.email)
                .bind(mail.now)
                .bind(mail.give_up_at)
                .bind(mail.send_at)
                .execute(&mut *$tx)
                .await?;
            true
        }
    }};
}
pub(super) use queue_mail;

const CLAIM_SQLITE: &str = "UPDATE mail_outbox SET leased_until = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM mail_outbox \
       WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
       AND (leased_until IS NULL OR leased_until <= $1) \
       ORDER BY next_attempt_at LIMIT $3) \
     RETURNING id, token_id, purpose, recipient, give_up_at, attempts";
const CLAIM_POSTGRES: &str = "UPDATE mail_outbox SET leased_until = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM mail_outbox \
       WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
       AND (leased_until IS NULL OR leased_until <= $1) \
       ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
     RETURNING id, token_id, purpose, recipient, give_up_at, attempts";

impl Repo {
    /// Writes a token and its mail (see [`queue_mail!`]) with `event`, if any, in one
    /// transaction; the event is recorded even when the cap holds the mail back. Returns
    /// whether the mail was written.
    pub async fn queue_mail(
        &self,
        mail: &NewMail<'_>,
        event: Option<&NewEvent<'_>>,
    ) -> RepoResult<bool> {
        let db = self.db();
        with_pool!(db, pool => {
            let mut tx = super::begin(pool).await?;
            let queued = queue_mail!(db, tx, mail);
            if let Some(event) = event {
                insert_event!(&mut *tx, event);
            }
            tx.commit().await?;
            Ok(queued)
        })
    }

    /// The unexpired token of `purpose` with this hash, with its user.
    pub async fn find_email_token(
        &self,
        purpose: MailPurpose,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> RepoResult<Option<FoundToken>> {
        const FIND: &str = "SELECT t.id, t.user_id, u.username, t.email, u.email_normalized \
             FROM email_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.purpose = $2 AND t.expires_at > $3";
        with_pool!(self.db(), pool => {
            sqlx::query(FIND)
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind(now)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::found_token(&row))
                .transpose()
        })
    }

    /// In one transaction: uses up the reset token `token_id` (if it is still unexpired),
    /// sets the new password hash, ends every session of the user, voids their other reset
    /// tokens and records `event`. `false` when the token was used or voided meanwhile.
    pub async fn reset_password(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        new_hash: &str,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let used = sqlx::query(
                "DELETE FROM email_tokens WHERE id = $1 AND user_id = $2 AND purpose = 'reset' \
                 AND expires_at > $3",
            )
            .bind(token_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used != 1 {
                return Ok(false);
            }
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(new_hash)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'password_reset' \
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(VOID_RESETS).bind(user_id).execute(&mut *tx).await?;
            insert_event!(&mut *tx, event);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// In one transaction: uses up the verification token `token_id` and, if the user's
    /// address is still `email` (the one the token was mailed to), marks it verified, voids
    /// the user's other verification tokens and records `event`. `false` when the token was
    /// used meanwhile or the address has changed since (the token is used up either way).
    pub async fn verify_email(
        &self,
        token_id: Uuid,
        user_id: Uuid,
        email: &str,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let used = sqlx::query(
                "DELETE FROM email_tokens WHERE id = $1 AND purpose = 'verify' AND expires_at > $2",
            )
            .bind(token_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used != 1 {
                return Ok(false);
            }
            let verified = sqlx::query(
                "UPDATE users SET email_verified = TRUE WHERE id = $1 AND email_normalized = $2",
            )
            .bind(user_id)
            .bind(email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if verified == 1 {
                sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'verify'")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                insert_event!(&mut *tx, event);
            }
            tx.commit().await?;
            Ok(verified == 1)
        })
    }

    /// Claims up to `limit` mails due at `now` (wall clock) for `lease`: no other sender takes
    /// them until the lease ends, and each claim counts as an attempt.
    pub async fn claim_mail(
        &self,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u32,
    ) -> RepoResult<Vec<OutgoingMail>> {
        let sql = match self.db() {
            Db::Sqlite(_) => CLAIM_SQLITE,
            Db::Postgres(_) => CLAIM_POSTGRES,
        };
        with_pool!(self.db(), pool => {
            sqlx::query(sql)
                .bind(now)
                .bind(now + lease)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(rows::outgoing_mail)
                .collect()
        })
    }

    /// Ends a claimed mail: sent, or failed for good.
    pub async fn end_mail(&self, id: Uuid, end: MailEnd, at: DateTime<Utc>) -> RepoResult<()> {
        let sql = match end {
            MailEnd::Sent => {
                "UPDATE mail_outbox SET sent_at = $2, leased_until = NULL WHERE id = $1"
            }
            MailEnd::Failed => {
                "UPDATE mail_outbox SET failed_at = $2, leased_until = NULL WHERE id = $1"
            }
        };
        with_pool!(self.db(), pool => {
            sqlx::query(sql).bind(id).bind(at).execute(pool).await?;
        });
        Ok(())
    }

    /// Puts a claimed mail back, due again at `at` (wall clock).
    pub async fn retry_mail(&self, id: Uuid, at: DateTime<Utc>) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query(
                "UPDATE mail_outbox SET next_attempt_at = $2, leased_until = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes expired tokens, and the mails created before `created_before` (their tokens
    /// have expired by then, sent or not); returns how many of each.
    pub async fn prune_mail(
        &self,
        now: DateTime<Utc>,
        created_before: DateTime<Utc>,
    ) -> RepoResult<(u64, u64)> {
        let tokens = self
            .delete_in_batches(
                "DELETE FROM email_tokens WHERE id IN \
                 (SELECT id FROM email_tokens WHERE expires_at < $1 LIMIT $2)",
                now,
            )
            .await?;
        let mails = self
            .delete_in_batches(
                "DELETE FROM mail_outbox WHERE id IN \
                 (SELECT id FROM mail_outbox WHERE created_at < $1 LIMIT $2)",
                created_before,
            )
            .await?;
        Ok((tokens, mails))
    }
}
