//! The TOTP second factor: enrolment, confirmation with recovery codes, the second step of a
//! login, and turning it off (see [`crate::auth::totp`] for the codes themselves).
//!
//! A login whose password is right, on an account with a confirmed factor, gets a challenge
//! instead of a session: a single-use `mfa_token`, valid for [`CHALLENGE_TTL`], stored as a
//! hash with the throttle subject the login was counted on. The attempt stays counted until
//! a code is accepted, and each wrong code counts on that subject too, so that the second
//! factor is guessed no faster than the password.

use chrono::TimeDelta;
use uuid::Uuid;

use super::{
    attempt_outcome, name_subject, throttled, AuthService, ClientInfo, Error, LoginSuccess,
    LOCK_RULE,
};
use crate::{
    auth::{
        device::Device,
        totp::{self, MfaToken, RecoveryCode, TotpSecret},
    },
    domain::{EventKind, User},
    repo::{Attempt, NewChallenge},
};

/// How long an `mfa_token` stays valid.
pub const CHALLENGE_TTL: TimeDelta = TimeDelta::minutes(5);

/// A started enrolment: what an authenticator app needs. `Debug` hides it.
pub struct TotpEnrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment([redacted])")
    }
}

impl AuthService {
    /// Stores a challenge for `user`, whose password was right, and returns its token.
    pub(super) async fn challenge(
        &self,
        user: &User,
        subject: &str,
        device: Option<&Device>,
        client: &ClientInfo,
    ) -> Result<String, Error> {
        let token = MfaToken::generate();
        self.inner
            .repo
            .insert_challenge(
                &NewChallenge {
                    token_hash: &token.hash(),
                    user_id: user.id,
                    subject,
                    device_id: device.map(|d| d.id),
                    expires_at: self.now() + CHALLENGE_TTL,
                },
                &self.event(user.id, EventKind::MfaChallenged, client),
            )
            .await?;
        tracing::info!(user_id = %user.id, "password accepted; second factor required");
        Ok(token.encode())
    }

    /// The second step of a login: `code` (TOTP or recovery) for the challenge of
    /// `mfa_token`. A wrong code leaves the challenge usable until it expires; an accepted
    /// one consumes it with the session it opens.
    pub async fn complete_mfa(
        &self,
        mfa_token: &str,
        code: &str,
        client: ClientInfo,
    ) -> Result<LoginSuccess, Error> {
        let result = self.second_step(mfa_token, code, client).await;
        metrics::counter!("authd_mfa_attempts_total", "outcome" => attempt_outcome(&result))
            .increment(1);
        result
    }

    async fn second_step(
        &self,
        mfa_token: &str,
        code: &str,
        client: ClientInfo,
    ) -> Result<LoginSuccess, Error> {
        let repo = &self.inner.repo;
        let token = MfaToken::parse(mfa_token).ok_or(Error::MfaRefused)?;
        let now = self.now();
        let challenge = repo
            .challenge(&token.hash(), now)
            .await?
            .ok_or(Error::MfaRefused)?;
        let user = challenge.user;
        if let Attempt::Locked { until } = repo
            .count_attempt(&challenge.subject, now, LOCK_RULE)
            .await?
        {
            return Err(throttled(until, now));
        }
        if !self.accept_code(user.id, code).await? {
            tracing::info!(
                user_id = %user.id,
                client_ip = %client.ip.as_deref().unwrap_or("-"),
                "second factor refused"
            );
            repo.record_event(&self.event(user.id, EventKind::LoginFailed, &client))
                .await?;
            return Err(Error::MfaRefused);
        }
        repo.clear_attempts(&challenge.subject).await?;
        let device = challenge.device_id.map(|id| Device {
            id,
            name: user.username.to_ascii_lowercase(),
        });
        self.open_session(user, device, &client, Some(&token.hash()))
            .await?
            // Another request with the same token won.
            .ok_or(Error::MfaRefused)
    }

    /// Whether `code` is a TOTP code of the user's confirmed factor for a time step not
    /// accepted before, or one of the user's unused recovery codes; accepting it uses it up.
    async fn accept_code(&self, user_id: Uuid, code: &str) -> Result<bool, Error> {
        let repo = &self.inner.repo;
        let now = self.now();
        if totp::totp_code(code).is_some() {
            let Some(factor) = repo.totp_factor(user_id).await? else {
                return Ok(false);
            };
            if !factor.confirmed {
                return Ok(false);
            }
            let secret = self.totp_secret(&factor)?;
            return match secret.matching_step(code, now.timestamp()) {
                // The compare-and-set decides between concurrent uses of one code.
                Some(step) if step > factor.last_step => {
                    Ok(repo.accept_totp_step(user_id, step).await?)
                }
                _ => Ok(false),
            };
        }
        match totp::recovery_code_hash(code) {
            Some(hash) => Ok(repo.use_recovery_code(user_id, &hash, now).await?),
            None => Ok(false),
        }
    }

    fn totp_secret(&self, factor: &crate::domain::StoredTotp) -> Result<TotpSecret, Error> {
        let clear = self
            .inner
            .vault
            .open_totp(factor)
            .map_err(|e| Error::Internal(e.into()))?;
        Ok(TotpSecret::from_bytes(clear))
    }

    /// Starts (or restarts) a TOTP enrolment: a new secret, stored but not yet guarding
    /// logins. [`Error::MfaAlreadyEnabled`] if a confirmed factor exists.
    pub async fn enrol_totp(&self, user: &User) -> Result<TotpEnrolment, Error> {
        let secret = TotpSecret::generate();
        let (stored, sealed) = self
            .inner
            .vault
            .seal_totp(user.id, secret.as_bytes().to_vec());
        if !self
            .inner
            .repo
            .begin_totp(user.id, &stored, sealed, self.now())
            .await?
        {
            return Err(Error::MfaAlreadyEnabled);
        }
        let enrolment = secret.enrolment(&self.inner.totp_issuer, &user.username)?;
        tracing::info!(user_id = %user.id, "TOTP enrolment started");
        Ok(TotpEnrolment {
            secret: enrolment.secret,
            otpauth_uri: enrolment.uri,
            qr_svg: enrolment.qr_svg,
        })
    }

    /// Confirms the pending enrolment with a code from the app: TOTP is then on, and these
    /// are the account's recovery codes, shown this once.
    pub async fn confirm_totp(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<RecoveryCode>, Error> {
        let repo = &self.inner.repo;
        let factor = repo.totp_factor(user.id).await?.ok_or(Error::NotFound)?;
        if factor.confirmed {
            return Err(Error::MfaAlreadyEnabled);
        }
        let step = self
            .totp_secret(&factor)?
            .matching_step(code, self.now().timestamp())
            .ok_or(Error::WrongCode)?;
        let codes = RecoveryCode::generate_set();
        let hashes: Vec<[u8; 32]> = codes.iter().map(RecoveryCode::hash).collect();
        if !repo
            .confirm_totp(
                user.id,
                &factor.secret,
                step,
                &hashes,
                self.now(),
                &self.event(user.id, EventKind::MfaEnabled, client),
            )
            .await?
        {
            // A new enrolment replaced the one this code was for.
            return Err(Error::WrongCode);
        }
        tracing::info!(user_id = %user.id, "TOTP enabled");
        Ok(codes)
    }

    /// Turns TOTP off, given a TOTP or recovery code; wrong codes count on the account's
    /// login throttle, as a wrong password would.
    pub async fn disable_totp(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let repo = &self.inner.repo;
        if !repo
            .totp_factor(user.id)
            .await?
            .is_some_and(|factor| factor.confirmed)
        {
            return Err(Error::NotFound);
        }
        let subject = name_subject(&user.username.to_ascii_lowercase());
        let now = self.now();
        if let Attempt::Locked { until } = repo.count_attempt(&subject, now, LOCK_RULE).await? {
            return Err(throttled(until, now));
        }
        if !self.accept_code(user.id, code).await? {
            return Err(Error::WrongCode);
        }
        repo.clear_attempts(&subject).await?;
        repo.remove_totp(
            user.id,
            &self.event(user.id, EventKind::MfaDisabled, client),
        )
        .await?;
        tracing::info!(user_id = %user.id, "TOTP disabled");
        Ok(())
    }

    /// Whether the user has TOTP on, and how many recovery codes are left.
    pub async fn totp_status(&self, user_id: Uuid) -> Result<(bool, i64), Error> {
        let repo = &self.inner.repo;
        let on = repo
            .totp_factor(user_id)
            .await?
            .is_some_and(|factor| factor.confirmed);
        let left = if on {
            repo.recovery_codes_left(user_id).await?
        } else {
            0
        };
        Ok((on, left))
    }
}
