//! Account and session logic: what happens on register, login, refresh and logout, independent
//! of HTTP. Handlers call it; it calls the repository.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    auth::{
        jwt::TokenError,
        password::Verdict,
        refresh::{DerivationKey, DERIVATION_KEY_NAME},
        workers::PoolError,
        AccessClaims, PasswordHasher, RefreshToken, TokenKeys,
    },
    config::Config,
    domain::{Email, FullName, Password, PasswordPolicyError, User, Username},
    error::{ApiError, AuthFailure, FieldError},
    repo::{Db, Lookups, NewSession, NewUser, RefreshRecord, RepoError, Rotation, Rotations},
};

/// Lifetimes of tokens and sessions.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub refresh_grace: Duration,
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            session_max: config.session_max,
            refresh_grace: config.refresh_grace,
        }
    }
}

/// The token pair of the contract. `Debug` hides both tokens.
#[derive(Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// A registration as received; [`AuthService::register`] checks the password policy.
pub struct Registration {
    pub username: Username,
    pub email: Option<Email>,
    pub full_name: Option<FullName>,
    pub password: SecretString,
}

/// Where a login came from, kept with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The outcome of a login or refresh that did not produce tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("incorrect username or password")]
    InvalidCredentials,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("too many failed logins")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<RepoError> for AuthError {
    fn from(e: RepoError) -> Self {
        AuthError::Api(e.into())
    }
}

impl From<PoolError> for AuthError {
    fn from(e: PoolError) -> Self {
        AuthError::Api(e.into())
    }
}

impl From<anyhow::Error> for AuthError {
    fn from(e: anyhow::Error) -> Self {
        AuthError::Api(e.into())
    }
}

/// An authenticated request: the user and the session its access token belongs to.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub session_id: Uuid,
}

#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    lookups: Lookups,
    rotations: Rotations,
    hasher: PasswordHasher,
    keys: TokenKeys,
    derivation_key: DerivationKey,
    policy: TokenPolicy,
}

impl AuthService {
    /// Loads (or, on a new database, creates) the signing keys and the refresh derivation key.
    pub async fn load(db: Db, hasher: PasswordHasher, config: &Config) -> anyhow::Result<Self> {
        let now = Utc::now();
        let keys = match &config.jwt_secret {
            Some(secret) => TokenKeys::hs256(
                secret.expose_secret().as_bytes(),
                &config.issuer,
                &config.audience,
            ),
            None => {
                let stored = db
                    .signing_keys_or_insert(&TokenKeys::generate_ed25519(now)?)
                    .await?;
                TokenKeys::ed25519(&stored, &config.issuer, &config.audience)?
            }
        };
        let derivation_key = db
            .server_secret(DERIVATION_KEY_NAME, &DerivationKey::generate(), now)
            .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                lookups: Lookups::start(db.clone())?,
                rotations: Rotations::start(db.clone()),
                db,
                hasher,
                keys,
                derivation_key: DerivationKey::from_bytes(&derivation_key)?,
                policy: TokenPolicy::from_config(config),
            }),
        })
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    /// Creates an account. The password policy and hashing run on the blocking pool.
    pub async fn register(&self, reg: Registration) -> Result<User, ApiError> {
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
            .map_err(|e: PasswordPolicyError| {
                ApiError::Validation(vec![FieldError::new("password", e.to_string())])
            })?;
        let user = self
            .inner
            .db
            .insert_user(&NewUser {
                id: Uuid::new_v4(),
                username: reg.username.as_str(),
                username_normalized: &reg.username.normalized(),
                email: reg.email.as_ref().map(Email::as_str),
                email_normalized: reg.email.as_ref().map(Email::normalized).as_deref(),
                full_name: reg.full_name.as_ref().map(FullName::as_str),
                password_hash: &hash,
                created_at: Utc::now(),
            })
            .await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user)
    }

    /// The password grant: checks the credentials and opens a session.
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        client: ClientInfo,
    ) -> Result<TokenPair, AuthError> {
        let db = &self.inner.db;
        let Ok(login) = Username::parse(username) else {
            // No account can have this name (and it may hold bytes a database refuses, such
            // as NUL): one dummy verification, so it costs what a wrong password costs.
            self.inner.hasher.verify(password, None).await?;
            tracing::info!("login failed");
            return Err(AuthError::InvalidCredentials);
        };
        let name = login.normalized();
        let now = Utc::now();
        let throttle = db.login_throttle(&name).await?;
        let had_failures = throttle.is_some();
        let locked_until = throttle.flatten().filter(|until| *until > now);
        if let Some(until) = locked_until {
            let trusted_client = match &client.ip {
                Some(ip) => {
                    db.has_logged_in_from(&name, ip, now - KNOWN_CLIENT_WINDOW)
                        .await?
                }
                None => false,
            };
            if !trusted_client {
                let wait = (until - now).num_milliseconds().max(0) as u64;
                tracing::info!("login throttled");
                return Err(AuthError::Throttled {
                    retry_after_secs: wait.div_ceil(1000),
                });
            }
        }

        // A password over the maximum can never be right: no hashing of megabyte inputs.
        let too_long = password.expose_secret().chars().count() > Password::MAX_LEN;
        let creds = if too_long {
            None
        } else {
            db.find_credentials(&name).await?
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
        let creds = match (verdict, creds) {
            (Verdict::Match { needs_rehash }, Some(creds)) if creds.disabled_at.is_none() => {
                if needs_rehash {
                    self.upgrade_hash(creds.user.id, &creds.password_hash, password)
                        .await;
                }
                creds
            }
            _ => {
                self.count_failure(&name, now).await?;
                tracing::info!("login failed");
                return Err(AuthError::InvalidCredentials);
            }
        };
        // A success ends the run of failures; most logins have none to clear, and skip the
        // write. (One counted while this login was verifying is kept: the stricter outcome.)
        if had_failures {
            db.clear_login_failures(&name).await?;
        }
        let user = creds.user;
        let expires_at = now + self.inner.policy.session_max;
        let idle_expires_at = (now + self.inner.policy.refresh_ttl).min(expires_at);
        let session_id = Uuid::new_v4();
        let refresh = RefreshToken::generate();
        db.create_session(&NewSession {
            id: session_id,
            user_id: user.id,
            token_hash: &refresh.hash(),
            now,
            idle_expires_at,
            expires_at,
            ip: client.ip.as_deref(),
            user_agent: client.user_agent.as_deref(),
        })
        .await?;
        tracing::info!(user_id = %user.id, session_id = %session_id, "login succeeded");
        let session = SessionRef {
            user_id: user.id,
            username: &user.username,
            session_id,
            expires_at,
        };
        Ok(self.token_pair(session, now, &refresh, idle_expires_at)?)
    }

    /// Counts a failed login for `name`; from the [`FREE_FAILURES`]th on, locks further
    /// attempts for a delay that doubles with each failure, up to [`MAX_LOCK`].
    async fn count_failure(&self, name: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        let failures = self.inner.db.record_login_failure(name, now).await?;
        if let Some(delay) = lock_delay(failures) {
            self.inner.db.lock_logins(name, now + delay).await?;
            tracing::warn!(
                failures,
                delay_secs = delay.as_secs(),
                "login name throttled after repeated failures"
            );
        }
        Ok(())
    }

    async fn upgrade_hash(&self, user_id: Uuid, old_hash: &str, password: SecretString) {
        let result = async {
            let new_hash = self.inner.hasher.hash(password).await?;
            self.inner
                .db
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

    /// The refresh grant: rotates the presented token (see the module docs of
    /// [`crate::auth::refresh`] and the contract's "Token semantics").
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, AuthError> {
        let token = RefreshToken::parse(presented).ok_or(AuthError::InvalidRefreshToken)?;
        let hash = token.hash();
        let db = &self.inner.db;
        let policy = &self.inner.policy;
        let now = Utc::now();
        let lookups = &self.inner.lookups;
        let mut record = lookups
            .find_refresh(&hash)
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        // One retry: a lost rotation race re-reads the session and takes the grace path.
        for _ in 0..2 {
            if !is_live(&record, now) {
                return Err(AuthError::InvalidRefreshToken);
            }
            let child = token.child(&self.inner.derivation_key);
            if record.token_generation == record.current_generation {
                if now >= record.idle_expires_at {
                    return Err(AuthError::InvalidRefreshToken);
                }
                let idle_expires_at = (now + policy.refresh_ttl).min(record.expires_at);
                let rotation = Rotation {
                    session_id: record.session_id,
                    from_generation: record.token_generation,
                    new_token_hash: child.hash(),
                    now,
                    idle_expires_at,
                };
                if self.inner.rotations.rotate(rotation).await? {
                    return Ok(self.token_pair(record.session(), now, &child, idle_expires_at)?);
                }
                record = lookups
                    .find_refresh(&hash)
                    .await?
                    .ok_or(AuthError::InvalidRefreshToken)?;
                continue;
            }
            // `now` was read before a concurrent rotation may have happened, so the age can be
            // negative: that is the very case the grace window exists for.
            let grace = TimeDelta::from_std(policy.refresh_grace).unwrap_or(TimeDelta::MAX);
            let just_rotated = record.token_generation + 1 == record.current_generation
                && !policy.refresh_grace.is_zero()
                && now - record.rotated_at <= grace;
            if just_rotated {
                // The child of the presented token is the session's current token.
                return Ok(self.token_pair(
                    record.session(),
                    now,
                    &child,
                    record.idle_expires_at,
                )?);
            }
            break;
        }
        // An ancestor presented outside the grace window: the chain has leaked (RFC 9700 §4.14).
        db.revoke_session(record.session_id, "refresh_token_reuse", now)
            .await?;
        tracing::warn!(
            user_id = %record.user_id,
            session_id = %record.session_id,
            "refresh token reuse detected; session revoked"
        );
        Err(AuthError::InvalidRefreshToken)
    }

    /// Ends the session a refresh token belongs to (any token of the chain will do).
    pub async fn logout_with_refresh(&self, presented: &str) -> Result<(), AuthError> {
        let token = RefreshToken::parse(presented).ok_or(AuthError::InvalidRefreshToken)?;
        let record = self
            .inner
            .lookups
            .find_refresh(&token.hash())
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        if record.revoked_at.is_some() {
            return Err(AuthError::InvalidRefreshToken);
        }
        self.end_session(record.user_id, record.session_id).await?;
        Ok(())
    }

    pub async fn end_session(&self, user_id: Uuid, session_id: Uuid) -> Result<(), ApiError> {
        self.inner
            .db
            .revoke_session(session_id, "logout", Utc::now())
            .await?;
        tracing::info!(user_id = %user_id, session_id = %session_id, "logout");
        Ok(())
    }

    pub async fn end_all_sessions(&self, user_id: Uuid) -> Result<(), ApiError> {
        let ended = self
            .inner
            .db
            .revoke_user_sessions(user_id, "logout_all", Utc::now())
            .await?;
        tracing::info!(user_id = %user_id, sessions = ended, "logout from all sessions");
        Ok(())
    }

    /// Checks an access token and that its session is still live: the per-request
    /// revocation check that makes logout immediate on every replica.
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated, ApiError> {
        let claims = self
            .inner
            .keys
            .verify(access_token, Utc::now().timestamp())
            .map_err(|e| {
                ApiError::Unauthorized(AuthFailure::InvalidToken(match e {
                    TokenError::Expired => "the access token has expired",
                    TokenError::Invalid => "the access token is invalid",
                }))
            })?;
        let user = self
            .inner
            .lookups
            .session_user(claims.sid, claims.sub)
            .await?
            .ok_or(ApiError::Unauthorized(AuthFailure::InvalidToken(
                "the session has ended",
            )))?;
        Ok(Authenticated {
            user,
            session_id: claims.sid,
        })
    }

    /// Signs an access token for `session` and pairs it with `refresh`.
    fn token_pair(
        &self,
        session: SessionRef<'_>,
        now: DateTime<Utc>,
        refresh: &RefreshToken,
        idle_expires_at: DateTime<Utc>,
    ) -> anyhow::Result<TokenPair> {
        let keys = &self.inner.keys;
        // An access token never outlives its session.
        let exp = (now + self.inner.policy.access_ttl).min(session.expires_at);
        let claims = AccessClaims {
            sub: session.user_id,
            username: session.username.to_owned(),
            sid: session.session_id,
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: Uuid::new_v4(),
            iss: keys.issuer().to_owned(),
            aud: keys.audience().to_owned(),
        };
        Ok(TokenPair {
            access_token: keys.sign(&claims)?,
            token_type: "bearer",
            expires_in: (exp - now).num_seconds().max(0),
            refresh_token: refresh.encode(),
            refresh_expires_in: (idle_expires_at - now).num_seconds().max(0),
        })
    }
}

/// Consecutive failed logins allowed before a login name is throttled.
pub const FREE_FAILURES: i64 = 5;
/// The longest a throttled login name waits.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A client that logged in as a user within this window may still try while the user's
/// login name is throttled.
const KNOWN_CLIENT_WINDOW: TimeDelta = TimeDelta::days(30);

/// The lock after `failures` consecutive failures: none for the first four, then 1 s,
/// doubling with each further failure, capped at [`MAX_LOCK`].
pub fn lock_delay(failures: i64) -> Option<Duration> {
    let beyond = failures - FREE_FAILURES;
    if beyond < 0 {
        return None;
    }
    let secs = 1u64.checked_shl(beyond.min(32) as u32).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_LOCK))
}

/// What an access token says about its session.
#[derive(Clone, Copy)]
struct SessionRef<'a> {
    user_id: Uuid,
    username: &'a str,
    session_id: Uuid,
    /// The session's absolute end, which no token outlives.
    expires_at: DateTime<Utc>,
}

impl RefreshRecord {
    fn session(&self) -> SessionRef<'_> {
        SessionRef {
            user_id: self.user_id,
            username: &self.username,
            session_id: self.session_id,
            expires_at: self.expires_at,
        }
    }
}

/// A refresh record whose session can still be refreshed at all.
fn is_live(record: &RefreshRecord, now: DateTime<Utc>) -> bool {
    record.revoked_at.is_none() && record.disabled_at.is_none() && now < record.expires_at
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
