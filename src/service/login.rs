//! The password grant: the attempt counted against the login name (or a known device), one
//! argon2 verification whatever the name, and a new session, or a second-factor challenge.

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{AuthService, ClientInfo, Error, SessionRef, TokenPair};
use crate::{
    auth::{device::Device, password::Verdict, RefreshToken},
    domain::{EventKind, Password, User, Username},
    repo::{Attempt, LockRule, NewSession},
};

/// A successful login: the token pair, and the device cookie value that lets this browser
/// try again while the name is locked (see [`crate::auth::device`]).
#[derive(Debug)]
pub struct LoginSuccess {
    pub pair: TokenPair,
    pub device_cookie: String,
}

impl AuthService {
    /// The password grant: counts the attempt, checks the credentials and opens a session.
    ///
    /// The attempt is counted before the password is checked, against the login name, or,
    /// when `device_cookie` is a valid one for that name, against that device alone; a
    /// success clears that count. A locked subject gets [`Error::Throttled`] without a
    /// password check.
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        client: ClientInfo,
        device_cookie: Option<&str>,
    ) -> Result<LoginSuccess, Error> {
        let result = self
            .password_login(username, password, client, device_cookie)
            .await;
        metrics::counter!("authd_logins_total", "outcome" => attempt_outcome(&result)).increment(1);
        result
    }

    async fn password_login(
        &self,
        username: &str,
        password: SecretString,
        client: ClientInfo,
        device_cookie: Option<&str>,
    ) -> Result<LoginSuccess, Error> {
        let repo = &self.inner.repo;
        let Ok(login) = Username::parse(username) else {
            // No account can have this name (and it may hold bytes a database refuses, such
            // as NUL): one dummy verification, so it costs what a wrong password costs.
            self.inner.hasher.verify(password, None).await?;
            self.log_refusal(username, &client, false, "login failed");
            return Err(Error::InvalidCredentials);
        };
        let name = login.normalized();
        let now = self.now();
        let device = device_cookie
            .and_then(|value| self.inner.device_key.verify(value))
            .filter(|device| device.name == name);
        let subject = match &device {
            Some(device) => format!("device:{}", device.id.simple()),
            None => name_subject(&name),
        };
        let failures = match repo.count_attempt(&subject, now, LOCK_RULE).await? {
            Attempt::Admitted { failures } => failures,
            Attempt::Locked { until } => {
                self.log_refusal(&name, &client, device.is_some(), "login throttled");
                return Err(throttled(until, now));
            }
        };

        // A password over the maximum can never be right: no hashing of megabyte inputs.
        let too_long = password.expose_secret().chars().count() > Password::MAX_LEN;
        let creds = if too_long {
            None
        } else {
            repo.find_credentials(&name).await?
        };
        let verdict = if too_long {
            Verdict::Mismatch
        } else {
            // Always one argon2 verification, against a dummy hash for unknown users.
            let stored_hash = creds.as_ref().map(|c| c.password_hash.clone());
            self.inner
                .hasher
                .verify(password.clone(), stored_hash)
                .await?
        };
        let known_user = creds.as_ref().map(|c| c.user.id);
        let creds = match (verdict, creds) {
            (Verdict::Match { needs_rehash }, Some(creds)) if creds.disabled_at.is_none() => {
                if needs_rehash {
                    self.upgrade_hash(creds.user.id, &creds.password_hash, password)
                        .await;
                }
                creds
            }
            _ => {
                // Already counted; this failure locked the subject if it reached the threshold.
                if let Some(delay) = lock_delay(failures) {
                    tracing::warn!(
                        failures,
                        delay_secs = delay.as_secs(),
                        device = device.is_some(),
                        login = %self.inner.pseudonyms.tag(&name),
                        "login locked after repeated failures"
                    );
                }
                self.log_refusal(&name, &client, device.is_some(), "login failed");
                if let Some(user_id) = known_user {
                    repo.record_event(&self.event(user_id, EventKind::LoginFailed, &client))
                        .await?;
                }
                return Err(Error::InvalidCredentials);
            }
        };
        if self.inner.require_verified_email && !creds.user.email_verified {
            // The password was right: no guessing to count against the name.
            repo.clear_attempts(&subject).await?;
            self.log_refusal(
                &name,
                &client,
                device.is_some(),
                "login refused: address not verified",
            );
            return Err(Error::EmailNotVerified);
        }
        if creds.totp {
            // The attempt stays counted until the second factor is given.
            let mfa_token = self
                .challenge(&creds.user, &subject, device.as_ref(), &client)
                .await?;
            return Err(Error::MfaRequired { mfa_token });
        }
        repo.clear_attempts(&subject).await?;
        self.open_session(creds.user, device, &client, None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a session without a challenge was refused").into())
    }

    /// Opens a session for `user` who logged in from `device` (a new device id when `None`),
    /// consuming the challenge with hash `challenge` in the same transaction if one is given:
    /// `None` when that challenge was consumed already.
    pub(super) async fn open_session(
        &self,
        user: User,
        device: Option<Device>,
        client: &ClientInfo,
        challenge: Option<&[u8]>,
    ) -> Result<Option<LoginSuccess>, Error> {
        let now = self.now();
        let expires_at = now + self.inner.policy.session_max;
        let idle_expires_at = (now + self.inner.policy.refresh_ttl).min(expires_at);
        let session_id = Uuid::new_v4();
        let refresh = RefreshToken::generate();
        let created = self
            .inner
            .repo
            .create_session(
                &NewSession {
                    id: session_id,
                    user_id: user.id,
                    token_hash: &refresh.hash(),
                    now,
                    idle_expires_at,
                    expires_at,
                    ip: client.ip.as_deref(),
                    user_agent: client.user_agent.as_deref(),
                },
                &self.event(user.id, EventKind::LoginSucceeded, client),
                challenge,
            )
            .await?;
        if !created {
            return Ok(None);
        }
        tracing::info!(user_id = %user.id, session_id = %session_id, "login succeeded");
        let session = SessionRef {
            user_id: user.id,
            username: &user.username,
            session_id,
            expires_at,
        };
        let pair = self.token_pair(session, now, &refresh, idle_expires_at)?;
        // The same device keeps its id; a browser without one gets a new one.
        let device = device.unwrap_or_else(|| Device {
            id: Uuid::new_v4(),
            name: user.username.to_ascii_lowercase(),
        });
        Ok(Some(LoginSuccess {
            pair,
            device_cookie: self.inner.device_key.issue(&device),
        }))
    }

    async fn upgrade_hash(&self, user_id: Uuid, old_hash: &str, password: SecretString) {
        let result = async {
            let new_hash = self.inner.hasher.hash(password).await?;
            self.inner
                .repo
                .update_password_hash(user_id, old_hash, &new_hash)
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            // The login itself succeeded; the upgrade is retried at the next one.
            tracing::warn!(user_id = %user_id, error = format!("{e:#}"), "password hash upgrade failed");
        }
    }
}

/// The outcome label of a login attempt or a second step, for the metrics.
pub(super) fn attempt_outcome(result: &Result<LoginSuccess, Error>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(Error::InvalidCredentials | Error::MfaRefused) => "failure",
        Err(Error::MfaRequired { .. }) => "mfa_required",
        Err(Error::EmailNotVerified) => "email_not_verified",
        Err(Error::Throttled { .. }) => "throttled",
        Err(Error::Overloaded) => "overloaded",
        Err(_) => "error",
    }
}

/// Consecutive failed logins allowed before a login name (or device) is throttled.
pub const FREE_FAILURES: i64 = 5;
/// The longest a throttled login name waits.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// [`lock_delay`] as the repository's counting statement applies it.
pub(super) const LOCK_RULE: LockRule = LockRule {
    free: FREE_FAILURES,
    max_secs: MAX_LOCK.as_secs() as i64,
};

/// The attempt-count subject of a normalized login name (a device's is `device:<id>`).
pub(super) fn name_subject(normalized: &str) -> String {
    format!("name:{normalized}")
}

/// The refusal of an attempt on a subject locked until `until`, rounded up to whole seconds.
pub(super) fn throttled(until: DateTime<Utc>, now: DateTime<Utc>) -> Error {
    let wait = (until - now).num_milliseconds().max(1) as u64;
    Error::Throttled {
        retry_after_secs: wait.div_ceil(1000),
    }
}

/// The lock after `failures` consecutive failures: none for the first four, then 1 s,
/// doubling with each further failure, capped at [`MAX_LOCK`]. (The repository computes the
/// same in SQL from [`LOCK_RULE`]; a test holds the two together.)
pub fn lock_delay(failures: i64) -> Option<Duration> {
    let beyond = failures - FREE_FAILURES;
    if beyond < 0 {
        return None;
    }
    let secs = 1u64.checked_shl(beyond.min(32) as u32).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_doubles_from_the_fifth_failure_up_to_fifteen_minutes() {
        let delays: Vec<Option<u64>> = (1..=16)
            .map(|f| lock_delay(f).map(|d| d.as_secs()))
            .collect();
        assert_eq!(&delays[..4], &[None; 4]);
        assert_eq!(
            &delays[4..],
            &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900].map(Some)
        );
        assert_eq!(lock_delay(i64::MAX), Some(MAX_LOCK));
    }
}
