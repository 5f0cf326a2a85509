use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    rows::{self, USER_COLUMNS},
    with_pool, Repo, RepoResult,
};
use crate::domain::User;

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

/// What a login needs: the user, its PHC hash and whether the account is enabled.
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password_hash", &"[redacted]")
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

impl Repo {
    /// Inserts a user; a taken username or e-mail is [`super::RepoError::Conflict`], decided by
    /// the unique constraints, so concurrent registrations of one name cannot both succeed.
    pub async fn insert_user(&self, new: &NewUser<'_>) -> RepoResult<User> {
        let sql = format!(
            "INSERT INTO users (id, username, username_normalized, email, email_normalized, \
             full_name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {USER_COLUMNS}"
        );
        with_pool!(self.db(), pool => {
            let row = sqlx::query(&sql)
                .bind(new.id)
                .bind(new.username)
                .bind(new.username_normalized)
                .bind(new.email)
                .bind(new.email_normalized)
                .bind(new.full_name)
                .bind(new.password_hash)
                .bind(new.created_at)
                .fetch_one(pool)
                .await?;
            rows::user(&row, 0)
        })
    }

    pub async fn find_credentials(
        &self,
        username_normalized: &str,
    ) -> RepoResult<Option<Credentials>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, password_hash, disabled_at FROM users \
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
}
