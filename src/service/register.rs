//! Registration: a new account with a policy-checked, hashed password.

use secrecy::SecretString;
use uuid::Uuid;

use super::{AuthService, Error};
use crate::{
    domain::{Email, FullName, Password, User, Username},
    repo::NewUser,
};

/// A registration as received; [`AuthService::register`] checks the password policy.
pub struct Registration {
    pub username: Username,
    pub email: Option<Email>,
    pub full_name: Option<FullName>,
    pub password: SecretString,
}

impl AuthService {
    /// Creates an account. The password policy and hashing run on the blocking pool.
    pub async fn register(&self, reg: Registration) -> Result<User, Error> {
        let username = reg.username.as_str().to_owned();
        let email = reg.email.as_ref().map(|e| e.as_str().to_owned());
        // The policy check (zxcvbn) and the hash are both CPU work: one job on the hash pool.
        let hash = self
            .inner
            .hasher
            .run(move |hasher| {
                Password::parse(reg.password, &username, email.as_deref())
                    .map(|password| hasher.hash_now(password.expose()))
            })
            .await?
            .map_err(Error::WeakPassword)?;
        let id = Uuid::new_v4();
        let verification = reg
            .email
            .as_ref()
            .and_then(|address| self.verification_mail(id, address));
        let user = self
            .inner
            .repo
            .insert_user(
                &NewUser {
                    id,
                    username: reg.username.as_str(),
                    username_normalized: &reg.username.normalized(),
                    email: reg.email.as_ref().map(Email::as_str),
                    email_normalized: reg.email.as_ref().map(Email::normalized).as_deref(),
                    full_name: reg.full_name.as_ref().map(FullName::as_str),
                    password_hash: &hash,
                    created_at: self.now(),
                },
                verification.as_ref().map(|m| self.new_mail(m)).as_ref(),
            )
            .await?;
        tracing::info!(user_id = %user.id, "user registered");
        if verification.is_some() {
            self.mail_queued();
        }
        Ok(user)
    }
}
