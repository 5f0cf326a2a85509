//! The account's own changes: profile, password, deletion, and its event log.

use secrecy::SecretString;
use uuid::Uuid;

use super::{name_subject, throttled, AuthService, ClientInfo, Error, LOCK_RULE};
use crate::{
    auth::password::Verdict,
    domain::{Email, Event, EventKind, FullName, Password, User},
    repo::{Attempt, Credentials, Profile},
};

/// A change to the profile: `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub email: Option<Option<Email>>,
    pub full_name: Option<Option<FullName>>,
}

impl AuthService {
    /// Changes the e-mail address or the full name.
    pub async fn update_profile(&self, user: &User, change: ProfileChange) -> Result<User, Error> {
        // Each address with its normalized form, the one the unique constraint compares.
        let email = change
            .email
            .as_ref()
            .map(|email| email.as_ref().map(|e| (e.as_str(), e.normalized())));
        let profile = Profile {
            email: email
                .as_ref()
                .map(|email| email.as_ref().map(|(e, n)| (*e, n.as_str()))),
            full_name: change
                .full_name
                .as_ref()
                .map(|name| name.as_ref().map(FullName::as_str)),
        };
        // A new address (not the same one in other case) gets a verification mail.
        let old_address = user.email.as_deref().map(str::to_lowercase);
        let verification = match &change.email {
            Some(Some(address)) if old_address.as_deref() != Some(&address.normalized()) => {
                self.verification_mail(user.id, address)
            }
            _ => None,
        };
        let updated = self
            .inner
            .repo
            .update_profile(
                user.id,
                &profile,
                verification.as_ref().map(|m| self.new_mail(m)).as_ref(),
            )
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(user_id = %user.id, "profile updated");
        if verification.is_some() {
            self.mail_queued();
        }
        Ok(updated)
    }

    /// Checks the account's own password, asked again before a change: counted like a login
    /// attempt on the name (so a stolen access token does not open a way to guess it).
    async fn confirm_password(
        &self,
        user: &User,
        password: SecretString,
    ) -> Result<Credentials, Error> {
        // A stored username is valid, so this is its normalized form.
        let subject = name_subject(&user.username.to_ascii_lowercase());
        let now = self.now();
        if let Attempt::Locked { until } = self
            .inner
            .repo
            .count_attempt(&subject, now, LOCK_RULE)
            .await?
        {
            return Err(throttled(until, now));
        }
        let creds = self
            .inner
            .repo
            .credentials_by_id(user.id)
            .await?
            .ok_or(Error::InvalidCredentials)?;
        let verdict = self
            .inner
            .hasher
            .verify(password, Some(creds.password_hash.clone()))
            .await?;
        if verdict == Verdict::Mismatch {
            return Err(Error::InvalidCredentials);
        }
        self.inner.repo.clear_attempts(&subject).await?;
        Ok(creds)
    }

    /// Changes the password after checking the current one; every other session of the user
    /// ends, `keep` (the caller's) lives on.
    pub async fn change_password(
        &self,
        user: &User,
        keep: Uuid,
        current: SecretString,
        new: SecretString,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let creds = self.confirm_password(user, current).await?;
        let username = user.username.clone();
        let email = user.email.clone();
        let new_hash = self
            .inner
            .hasher
            .run(move |hasher| {
                Password::parse(new, &username, email.as_deref())
                    .map(|password| hasher.hash_now(password.expose()))
            })
            .await?
            .map_err(Error::WeakPassword)?;
        let changed = self
            .inner
            .repo
            .change_password(
                user.id,
                &creds.password_hash,
                &new_hash,
                keep,
                self.now(),
                &self.event(user.id, EventKind::PasswordChanged, client),
            )
            .await?;
        if !changed {
            // Another change won meanwhile: the password checked is no longer the current one.
            return Err(Error::InvalidCredentials);
        }
        tracing::info!(user_id = %user.id, "password changed; other sessions ended");
        Ok(())
    }

    /// Deletes the account after checking its password: the user, its sessions, their
    /// refresh-token hashes and its API keys, in one statement.
    pub async fn delete_account(&self, user: &User, password: SecretString) -> Result<(), Error> {
        self.confirm_password(user, password).await?;
        if !self.inner.repo.delete_user(user.id).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %user.id, "account deleted");
        Ok(())
    }

    /// A page of the user's events, newest first: `limit` of those older than `before`.
    pub async fn events(
        &self,
        user_id: Uuid,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        Ok(self.inner.repo.events(user_id, before, limit).await?)
    }
}
