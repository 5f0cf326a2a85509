//! Each row shape, mapped once for every driver.
//!
//! PostgreSQL and the SQLite writer are read through sqlx, the SQLite hot-path reads through
//! rusqlite ([`super::sqlite_reader`]). [`Columns`] reads a column by position from a row of
//! any of them, so that a statement's columns and the struct they fill are written once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use uuid::Uuid;

use super::{
    api_keys::KeyUser,
    mail::{FoundToken, OutgoingMail},
    mfa::Challenge,
    sessions::RefreshRecord,
    users::Credentials,
    RepoError, RepoResult,
};
use crate::domain::{
    ApiKeyInfo, Event, MailPurpose, SessionInfo, StoredSecret, StoredSigningKey, StoredTotp, User,
};

/// A row of any driver, read by column position.
pub(super) trait Columns {
    fn uuid(&self, i: usize) -> RepoResult<Uuid>;
    fn opt_uuid(&self, i: usize) -> RepoResult<Option<Uuid>>;
    fn int(&self, i: usize) -> RepoResult<i64>;
    fn flag(&self, i: usize) -> RepoResult<bool>;
    fn bytes(&self, i: usize) -> RepoResult<Vec<u8>>;
    fn opt_text(&self, i: usize) -> RepoResult<Option<String>>;
    fn opt_time(&self, i: usize) -> RepoResult<Option<DateTime<Utc>>>;

    fn text(&self, i: usize) -> RepoResult<String> {
        self.opt_text(i)?.ok_or_else(null)
    }

    fn time(&self, i: usize) -> RepoResult<DateTime<Utc>> {
        self.opt_time(i)?.ok_or_else(null)
    }
}

fn null() -> RepoError {
    RepoError::other("a required column is NULL")
}

macro_rules! sqlx_columns {
    ($row:ty) => {
        impl Columns for $row {
            fn uuid(&self, i: usize) -> RepoResult<Uuid> {
                Ok(self.try_get(i)?)
            }
            fn opt_uuid(&self, i: usize) -> RepoResult<Option<Uuid>> {
                Ok(self.try_get(i)?)
            }
            fn int(&self, i: usize) -> RepoResult<i64> {
                Ok(self.try_get(i)?)
            }
            fn flag(&self, i: usize) -> RepoResult<bool> {
                Ok(self.try_get(i)?)
            }
            fn bytes(&self, i: usize) -> RepoResult<Vec<u8>> {
                Ok(self.try_get(i)?)
            }
            fn opt_text(&self, i: usize) -> RepoResult<Option<String>> {
                Ok(self.try_get(i)?)
            }
            fn opt_time(&self, i: usize) -> RepoResult<Option<DateTime<Utc>>> {
                Ok(self.try_get(i)?)
            }
        }
    };
}

sqlx_columns!(sqlx::postgres::PgRow);
sqlx_columns!(sqlx::sqlite::SqliteRow);

impl Columns for rusqlite::Row<'_> {
    fn uuid(&self, i: usize) -> RepoResult<Uuid> {
        Ok(self.get(i)?)
    }
    fn opt_uuid(&self, i: usize) -> RepoResult<Option<Uuid>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> RepoResult<i64> {
        Ok(self.get(i)?)
    }
    fn flag(&self, i: usize) -> RepoResult<bool> {
        Ok(self.get(i)?)
    }
    fn bytes(&self, i: usize) -> RepoResult<Vec<u8>> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> RepoResult<Option<String>> {
        Ok(self.get(i)?)
    }
    /// As sqlx writes times on SQLite: RFC 3339 text.
    fn opt_time(&self, i: usize) -> RepoResult<Option<DateTime<Utc>>> {
        let Some(text) = self.get_ref(i)?.as_str_or_null()? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(text)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|e| RepoError::Other(Arc::new(e)))
    }
}

impl From<rusqlite::types::FromSqlError> for RepoError {
    fn from(err: rusqlite::types::FromSqlError) -> Self {
        RepoError::Other(Arc::new(err))
    }
}

/// The user object's columns of the `users` table, in [`user`]'s order.
pub(super) const USER_COLUMNS: &str = "id, username, email, full_name, created_at, email_verified";

/// A user from [`USER_COLUMNS`], starting at column `at`.
pub(super) fn user(row: &impl Columns, at: usize) -> RepoResult<User> {
    Ok(User {
        id: row.uuid(at)?,
        username: row.text(at + 1)?,
        email: row.opt_text(at + 2)?,
        full_name: row.opt_text(at + 3)?,
        created_at: row.time(at + 4)?,
        email_verified: row.flag(at + 5)?,
    })
}

/// [`USER_COLUMNS`], `password_hash, disabled_at`, when TOTP was confirmed.
pub(super) fn credentials(row: &impl Columns) -> RepoResult<Credentials> {
    Ok(Credentials {
        user: user(row, 0)?,
        password_hash: row.text(6)?,
        disabled_at: row.opt_time(7)?,
        totp: row.opt_time(8)?.is_some(),
    })
}

/// `s.id`, then [`USER_COLUMNS`]: a live session and its owner.
pub(super) fn session_user(row: &impl Columns) -> RepoResult<(Uuid, User)> {
    Ok((row.uuid(0)?, user(row, 1)?))
}

/// The columns of [`super::sessions::FIND_REFRESH`], in [`RefreshRecord`]'s field order.
pub(super) fn refresh_record(row: &impl Columns) -> RepoResult<RefreshRecord> {
    Ok(RefreshRecord {
        session_id: row.uuid(0)?,
        token_generation: row.int(1)?,
        current_generation: row.int(2)?,
        user_id: row.uuid(3)?,
        username: row.text(4)?,
        rotated_at: row.time(5)?,
        idle_expires_at: row.time(6)?,
        expires_at: row.time(7)?,
        revoked_at: row.opt_time(8)?,
        disabled_at: row.opt_time(9)?,
    })
}

/// `kid, algorithm, private_key, public_key, active, created_at, sealed, retired_at`.
pub(super) fn signing_key(row: &impl Columns) -> RepoResult<StoredSigningKey> {
    Ok(StoredSigningKey {
        kid: row.text(0)?,
        algorithm: row.text(1)?,
        private_key: row.bytes(2)?,
        public_key: row.bytes(3)?,
        active: row.flag(4)?,
        created_at: row.time(5)?,
        sealed: row.flag(6)?,
        retired_at: row.opt_time(7)?,
    })
}

pub(super) fn server_secret(row: &impl Columns) -> RepoResult<StoredSecret> {
    Ok(StoredSecret {
        name: row.text(0)?,
        secret: row.bytes(1)?,
        sealed: row.flag(2)?,
    })
}

/// `k.key_hash`, then what [`key_user`] reads: a key found among several by its hash.
pub(super) fn hashed_key_user(row: &sqlx::postgres::PgRow) -> RepoResult<(Vec<u8>, KeyUser)> {
    Ok((row.bytes(0)?, key_user_from(row, 1)?))
}

/// `id, name, prefix, created_at, last_used_at, expires_at` of `api_keys`.
pub(super) fn api_key_info(row: &impl Columns) -> RepoResult<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.uuid(0)?,
        name: row.text(1)?,
        prefix: row.text(2)?,
        created_at: row.time(3)?,
        last_used_at: row.opt_time(4)?,
        expires_at: row.opt_time(5)?,
    })
}

/// `k.id, k.last_used_at, k.expires_at`, then [`USER_COLUMNS`]: an API key and its user.
pub(super) fn key_user(row: &impl Columns) -> RepoResult<KeyUser> {
    key_user_from(row, 0)
}

fn key_user_from(row: &impl Columns, at: usize) -> RepoResult<KeyUser> {
    Ok(KeyUser {
        key_id: row.uuid(at)?,
        last_used_at: row.opt_time(at + 1)?,
        expires_at: row.opt_time(at + 2)?,
        user: user(row, at + 3)?,
    })
}

/// `id, created_at, last_used_at, ip, user_agent` of `sessions`.
pub(super) fn session_info(row: &impl Columns) -> RepoResult<SessionInfo> {
    Ok(SessionInfo {
        id: row.uuid(0)?,
        created_at: row.time(1)?,
        last_used_at: row.time(2)?,
        ip: row.opt_text(3)?,
        user_agent: row.opt_text(4)?,
    })
}

/// `id, type, at, ip, user_agent` of `events`.
pub(super) fn event(row: &impl Columns) -> RepoResult<Event> {
    Ok(Event {
        id: row.uuid(0)?,
        kind: row.text(1)?,
        at: row.time(2)?,
        ip: row.opt_text(3)?,
        user_agent: row.opt_text(4)?,
    })
}

/// [`super::mfa::TOTP_COLUMNS`]: `user_id, secret, sealed, confirmed_at, last_step`.
pub(super) fn stored_totp(row: &impl Columns) -> RepoResult<StoredTotp> {
    Ok(StoredTotp {
        user_id: row.uuid(0)?,
        secret: row.bytes(1)?,
        sealed: row.flag(2)?,
        confirmed: row.opt_time(3)?.is_some(),
        last_step: row.int(4)?,
    })
}

/// `c.subject, c.device_id`, then [`USER_COLUMNS`]: a login's challenge and its user.
pub(super) fn challenge(row: &impl Columns) -> RepoResult<Challenge> {
    Ok(Challenge {
        subject: row.text(0)?,
        device_id: row.opt_uuid(1)?,
        user: user(row, 2)?,
    })
}

/// `t.id, t.user_id, u.username, t.email, u.email_normalized`: an e-mail token and its user.
pub(super) fn found_token(row: &impl Columns) -> RepoResult<FoundToken> {
    Ok(FoundToken {
        id: row.uuid(0)?,
        user_id: row.uuid(1)?,
        username: row.text(2)?,
        email: row.text(3)?,
        user_email: row.opt_text(4)?,
    })
}

/// `id, token_id, purpose, recipient, give_up_at, attempts` of `mail_outbox`.
pub(super) fn outgoing_mail(row: &impl Columns) -> RepoResult<OutgoingMail> {
    let purpose = row.text(2)?;
    Ok(OutgoingMail {
        id: row.uuid(0)?,
        token_id: row.opt_uuid(1)?,
        purpose: MailPurpose::from_stored(&purpose)
            .ok_or_else(|| RepoError::other("an outbox row of an unknown purpose"))?,
        recipient: row.text(3)?,
        give_up_at: row.time(4)?,
        attempts: row.int(5)?,
    })
}
