use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    events::insert_event,
    mail::{queue_mail, NewMail},
    rows::{self, USER_COLUMNS},
    with_pool, Repo, RepoResult,
};
use crate::domain::{NewEvent, User};

/// A user to insert; the password is already hashed.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub username_normalized: &'a str,
    pub email: Option<&'a str>,
    pub email_normalized: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub password_hash: &'a str,
    pub created_at: DateTime<Utc>,
}

/// What a login needs: the user, its PHC hash, whether the account is enabled, and whether
/// it has a second factor.
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub disabled_at: Option<DateTime<Utc>>,
    /// A confirmed TOTP factor guards the account.
    pub totp: bool,
}

/// The columns [`rows::credentials`] reads from `users` after [`USER_COLUMNS`].
const CREDENTIAL_COLUMNS: &str = "password_hash, disabled_at, \
     (SELECT t.confirmed_at FROM totp_factors t WHERE t.user_id = users.id)";

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password_hash", &"[redacted]")
            .field("disabled_at", &self.disabled_at)
            .field("totp", &self.totp)
            .finish()
    }
}

impl Repo {
    /// Inserts a user, with the verification mail of its address if one is given, in one
    /// transaction; a taken username or e-mail is [`super::RepoError::Conflict`], decided by
    /// the unique constraints, so concurrent registrations of one name cannot both succeed.
    pub async fn insert_user(
        &self,
        new: &NewUser<'_>,
        verification: Option<&NewMail<'_>>,
    ) -> RepoResult<User> {
        let sql = format!(
            "INSERT INTO users (id, username, username_normalized, email, email_normalized, \
             full_name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {USER_COLUMNS}"
        );
        let db = self.db();
        with_pool!(db, pool => {
            let mut tx = super::begin(pool).await?;
            let row = sqlx::query(&sql)
                .bind(new.id)
                .bind(new.username)
                .bind(new.username_normalized)
                .bind(new.email)
                .bind(new.email_normalized)
                .bind(new.full_name)
                .bind(new.password_hash)
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await?;
            let user = rows::user(&row, 0)?;
            if let Some(mail) = verification {
                queue_mail!(db, tx, mail);
            }
            tx.commit().await?;
            Ok(user)
        })
    }

    /// The user whose address is `email_normalized`.
    pub async fn user_by_email(&self, email_normalized: &str) -> RepoResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_normalized = $1");
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(email_normalized)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::user(&row, 0))
                .transpose()
        })
    }

    pub async fn find_credentials(
        &self,
        username_normalized: &str,
    ) -> RepoResult<Option<Credentials>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, {CREDENTIAL_COLUMNS} FROM users \
             WHERE username_normalized = $1"
        );
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(username_normalized)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::credentials(&row))
                .transpose()
        })
    }

    /// Replaces a password hash (used to upgrade hashes made with older parameters).
    /// Conditional on the old hash, so that a concurrent password change is never overwritten.
    pub async fn update_password_hash(
        &self,
        user_id: Uuid,
        old_hash: &str,
        new_hash: &str,
    ) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The credentials of the user with this id.
    pub async fn credentials_by_id(&self, user_id: Uuid) -> RepoResult<Option<Credentials>> {
        let sql = format!("SELECT {USER_COLUMNS}, {CREDENTIAL_COLUMNS} FROM users WHERE id = $1");
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
                .map(|row| rows::credentials(&row))
                .transpose()
        })
    }

    /// Changes the e-mail address (with its normalized copy) and the full name; a taken address
    /// is [`super::RepoError::Conflict`]. A new address is not verified; its verification
    /// mail, if given, is written in the same transaction. Returns the user as it now is.
    pub async fn update_profile(
        &self,
        user_id: Uuid,
        profile: &Profile<'_>,
        verification: Option<&NewMail<'_>>,
    ) -> RepoResult<Option<User>> {
        // A field not in the change keeps its stored value ($5, $6: whether to set it).
        let sql = format!(
            "UPDATE users SET \
             email_verified = CASE WHEN $5 AND email_normalized IS DISTINCT FROM $2 \
               THEN FALSE ELSE email_verified END, \
             email = CASE WHEN $5 THEN $1 ELSE email END, \
             email_normalized = CASE WHEN $5 THEN $2 ELSE email_normalized END, \
             full_name = CASE WHEN $6 THEN $3 ELSE full_name END \
             WHERE id = $4 RETURNING {USER_COLUMNS}"
        );
        let (email, email_normalized) = profile.email.flatten().unzip();
        let db = self.db();
        with_pool!(db, pool => {
            let mut tx = super::begin(pool).await?;
            let Some(row) = sqlx::query(&sql)
                .bind(email)
                .bind(email_normalized)
                .bind(profile.full_name.flatten())
                .bind(user_id)
                .bind(profile.email.is_some())
                .bind(profile.full_name.is_some())
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let user = rows::user(&row, 0)?;
            if let Some(mail) = verification {
                queue_mail!(db, tx, mail);
            }
            tx.commit().await?;
            Ok(Some(user))
        })
    }

    /// In one transaction: replaces the password hash (if it is still `old_hash`), ends
    /// every live session of the user but `keep`, voids the user's reset tokens, and records
    /// `event`. `false` when the hash changed meanwhile.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        old_hash: &str,
        new_hash: &str,
        keep: Uuid,
        now: DateTime<Utc>,
        event: &NewEvent<'_>,
    ) -> RepoResult<bool> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let changed = sqlx::query(
                "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
            )
            .bind(new_hash)
            .bind(user_id)
            .bind(old_hash)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'password_changed' \
                 WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
            sqlx::query(super::mail::VOID_RESETS)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            insert_event!(&mut *tx, event);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes the user; its sessions, refresh-token hashes and API keys go with it (the
    /// foreign keys cascade, within the one statement). `false` if there was no such user.
    pub async fn delete_user(&self, user_id: Uuid) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Users for `authd users list`: name order, after `after`, at most `limit`, with when
    /// each was disabled.
    pub async fn list_users(
        &self,
        after: &str,
        limit: u32,
    ) -> RepoResult<Vec<(User, Option<DateTime<Utc>>)>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, {CREDENTIAL_COLUMNS} FROM users \
             WHERE username_normalized > $1 ORDER BY username_normalized LIMIT $2"
        );
        with_pool!(self.db(), pool => {
            sqlx::query(&sql)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| rows::credentials(row).map(|c| (c.user, c.disabled_at)))
                .collect()
        })
    }

    /// Disables (`Some(now)`) or enables (`None`) an account; `false` if there is no such
    /// user. A disabled account's tokens and keys are refused at the next request (the
    /// checks join the user).
    pub async fn set_disabled(&self, user_id: Uuid, at: Option<DateTime<Utc>>) -> RepoResult<bool> {
        let n = with_pool!(self.db(), pool => {
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
                .bind(at)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Ends every live session and revokes every live API key of a user, in one
    /// transaction; returns how many of each.
    pub async fn revoke_everything(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> RepoResult<(u64, u64)> {
        with_pool!(self.db(), pool => {
            let mut tx = super::begin(pool).await?;
            let sessions = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'revoked_by_operator' \
                 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let keys = sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok((sessions, keys))
        })
    }
}

/// A change to a user's editable fields: `None` leaves a field as stored, `Some(None)`
/// clears it. The e-mail address comes with its normalized form.
#[derive(Debug, Default)]
pub struct Profile<'a> {
    pub email: Option<Option<(&'a str, &'a str)>>,
    pub full_name: Option<Option<&'a str>>,
}
