//! Password reset and address verification by e-mail.
//!
//! Each flow makes a single-use token (see [`crate::auth::email_token`]) and writes the mail
//! that carries it to the outbox in the same transaction; [`super::outbox`] hands it to SMTP
//! after commit. At most [`MAILS_PER_HOUR`] mails of each purpose go to an address in an
//! hour: further requests answer the same and write nothing, so the last mailed token stays
//! good.

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{name_subject, AuthService, ClientInfo, Error};
use crate::{
    auth::email_token::EmailToken,
    domain::{Email, EventKind, MailPurpose, Password, User},
    repo::NewMail,
};

/// Mails of one purpose to one address per hour.
pub const MAILS_PER_HOUR: i64 = 3;

/// A token and its mail, before they are written: the borrowed [`NewMail`] is made from it.
pub(super) struct PendingMail {
    token_id: Uuid,
    token_hash: [u8; 32],
    user_id: Uuid,
    purpose: MailPurpose,
    recipient: String,
    email: String,
}

impl AuthService {
    /// `Err(EmailUnavailable)` unless an SMTP server is configured.
    fn mail_on(&self) -> Result<(), Error> {
        if self.inner.mail_on {
            Ok(())
        } else {
            Err(Error::EmailUnavailable)
        }
    }

    /// A new token of `purpose` for `user_id`, to be mailed to `address`.
    pub(super) fn pending_mail(
        &self,
        user_id: Uuid,
        purpose: MailPurpose,
        address: &Email,
    ) -> PendingMail {
        let token_id = Uuid::new_v4();
        PendingMail {
            token_id,
            token_hash: self.inner.email_key.token(token_id).hash(),
            user_id,
            purpose,
            recipient: address.as_str().to_owned(),
            email: address.normalized(),
        }
    }

    /// The verification mail of `address`, when e-mail is on.
    pub(super) fn verification_mail(&self, user_id: Uuid, address: &Email) -> Option<PendingMail> {
        self.inner
            .mail_on
            .then(|| self.pending_mail(user_id, MailPurpose::Verification, address))
    }

    /// What the repository writes for `pending`.
    pub(super) fn new_mail<'a>(&self, pending: &'a PendingMail) -> NewMail<'a> {
        let now = self.now();
        let lifetime = TimeDelta::from_std(pending.purpose.token_lifetime())
            .expect("token lifetimes are minutes or hours");
        // Retries run on the senders' own clock.
        let wall = Utc::now();
        NewMail {
            token_id: pending.token_id,
            token_hash: &pending.token_hash,
            user_id: pending.user_id,
            purpose: pending.purpose,
            recipient: &pending.recipient,
            email: &pending.email,
            now,
            expires_at: now + lifetime,
            send_at: wall,
            give_up_at: wall + lifetime,
            hourly_cap: MAILS_PER_HOUR,
        }
    }

    /// Tells this replica's sender that a mail is waiting.
    pub(super) fn mail_queued(&self) {
        self.inner.outbox_wake.notify_one();
    }

    /// `POST /auth/password-reset`: answers at once, the same whether or not an account has
    /// `address`; the lookup and the mail happen after the answer, so that neither the answer
    /// nor its timing tells whether the address is registered.
    pub fn request_password_reset(&self, address: Email, client: ClientInfo) -> Result<(), Error> {
        self.mail_on()?;
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.queue_password_reset(&address, &client).await {
                tracing::warn!(error = %e, "a password-reset request could not be handled");
            }
        });
        Ok(())
    }

    async fn queue_password_reset(
        &self,
        address: &Email,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let repo = &self.inner.repo;
        let Some(user) = repo.user_by_email(&address.normalized()).await? else {
            tracing::info!("password reset asked for an address no account has");
            return Ok(());
        };
        // To the address as the account has it, whatever case the request wrote it in.
        let stored = user.email.as_deref().and_then(|e| Email::parse(e).ok());
        let to = stored.as_ref().unwrap_or(address);
        let pending = self.pending_mail(user.id, MailPurpose::PasswordReset, to);
        let event = self.event(user.id, EventKind::PasswordResetRequested, client);
        if repo
            .queue_mail(&self.new_mail(&pending), Some(&event))
            .await?
        {
            tracing::info!(user_id = %user.id, "password-reset mail queued");
            self.mail_queued();
        } else {
            tracing::info!(user_id = %user.id, "password-reset mail held back by the hourly cap");
        }
        Ok(())
    }

    /// `POST /auth/password-reset/confirm`: sets the new password under the usual policy,
    /// ends every session of the user and voids their other reset tokens. A refused password
    /// leaves the token good.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: SecretString,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        self.mail_on()?;
        let repo = &self.inner.repo;
        let token = EmailToken::parse(token).ok_or(Error::InvalidEmailToken)?;
        let found = repo
            .find_email_token(MailPurpose::PasswordReset, &token.hash(), self.now())
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        let username = found.username.clone();
        let email = found.user_email.clone();
        let new_hash = self
            .inner
            .hasher
            .run(move |hasher| {
                Password::parse(new_password, &username, email.as_deref())
                    .map(|password| hasher.hash_now(password.expose()))
            })
            .await?
            .map_err(Error::WeakPassword)?;
        let event = self.event(found.user_id, EventKind::PasswordReset, client);
        if !repo
            .reset_password(found.id, found.user_id, &new_hash, self.now(), &event)
            .await?
        {
            return Err(Error::InvalidEmailToken);
        }
        // The owner of the address is back in: a lock from guesses at the name ends.
        repo.clear_attempts(&name_subject(&found.username.to_ascii_lowercase()))
            .await?;
        tracing::info!(user_id = %found.user_id, "password reset; every session ended");
        Ok(())
    }

    /// `POST /users/me/email/verify`: a new verification mail to the account's address.
    pub async fn resend_verification(&self, user: &User) -> Result<(), Error> {
        self.mail_on()?;
        let address = user
            .email
            .as_deref()
            .map(Email::parse)
            .ok_or(Error::NoEmail)?
            .map_err(|_| Error::NoEmail)?;
        if user.email_verified {
            return Err(Error::AlreadyVerified);
        }
        let pending = self.pending_mail(user.id, MailPurpose::Verification, &address);
        if self
            .inner
            .repo
            .queue_mail(&self.new_mail(&pending), None)
            .await?
        {
            tracing::info!(user_id = %user.id, "verification mail queued");
            self.mail_queued();
        } else {
            tracing::info!(user_id = %user.id, "verification mail held back by the hourly cap");
        }
        Ok(())
    }

    /// `POST /auth/verify-email`: marks the address the token was mailed to as verified, if it
    /// is still the account's.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<(), Error> {
        self.mail_on()?;
        let repo = &self.inner.repo;
        let token = EmailToken::parse(token).ok_or(Error::InvalidEmailToken)?;
        let found = repo
            .find_email_token(MailPurpose::Verification, &token.hash(), self.now())
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        let event = self.event(found.user_id, EventKind::EmailVerified, client);
        if !repo
            .verify_email(found.id, found.user_id, &found.email, self.now(), &event)
            .await?
        {
            return Err(Error::InvalidEmailToken);
        }
        tracing::info!(user_id = %found.user_id, "e-mail address verified");
        Ok(())
    }
}
