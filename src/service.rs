//! Account and session logic: what happens on register, login, refresh and logout, in the
//! terms of the domain. Handlers call it; it calls the repository ([`Repo`]) and the
//! credential code ([`crate::auth`]). It knows nothing of HTTP: its answers are values and
//! an [`Error`], which `src/http/` turns into statuses and messages.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{
    auth::{
        api_key::{self, ApiKey},
        csrf::{CsrfKey, CSRF_KEY_NAME},
        device::{Device, DeviceKey, DEVICE_KEY_NAME},
        email_token::{EmailTokenKey, EMAIL_TOKEN_KEY_NAME},
        jwt::TokenError,
        password::Verdict,
        pseudonym::{PseudonymKey, PSEUDONYM_KEY_NAME},
        refresh::{DerivationKey, DERIVATION_KEY_NAME},
        totp,
        workers::PoolError,
        AccessClaims, PasswordHasher, RefreshToken, TokenKeys,
    },
    clock::Clock,
    config::Config,
    domain::{
        Email, Event, EventKind, FullName, NewEvent, Password, PasswordPolicyError, User, Username,
    },
    repo::{
        api_keys::LAST_USED_PRECISION, ApiKeyInfo, Attempt, Credentials, LockRule, NewApiKey,
        NewSession, NewUser, Profile, RefreshRecord, Repo, RepoError, Rotation, SessionInfo,
        UniqueField,
    },
};

mod email;
mod mfa;
pub mod outbox;
mod secrets;
pub use email::MAILS_PER_HOUR;
pub use mfa::TotpEnrolment;
pub use secrets::{Vault, VaultError};

/// Lifetimes of tokens and sessions.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub refresh_grace: Duration,
    /// How long account events are kept.
    pub event_retention: TimeDelta,
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            session_max: config.session_max,
            refresh_grace: config.refresh_grace,
            event_retention: TimeDelta::days(config.event_retention_days.into()),
        }
    }
}

/// A new access token and the refresh token that goes with it. `Debug` hides both tokens.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: i64,
    /// The session's CSRF token, for a browser that keeps the refresh token in a cookie.
    pub csrf_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// A successful login: the token pair, and the device cookie value that lets this browser
/// try again while the name is locked (see [`crate::auth::device`]).
#[derive(Debug)]
pub struct LoginSuccess {
    pub pair: TokenPair,
    pub device_cookie: String,
}

/// What housekeeping removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub attempt_counts: u64,
    pub events: u64,
    pub mfa_challenges: u64,
    pub email_tokens: u64,
    pub mails: u64,
}

/// A change to the profile: `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub email: Option<Option<Email>>,
    pub full_name: Option<Option<FullName>>,
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

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Expired,
    /// Malformed, forged, for another issuer or audience, or signed by an unknown key.
    Invalid,
    /// Its session was ended, or its account disabled.
    SessionEnded,
}

/// What went wrong, in the service's terms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown user, wrong password or disabled account: deliberately not told apart.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("access token refused: {0:?}")]
    AccessTokenRefused(TokenRefusal),
    /// The refresh token is unknown, expired, revoked or reused.
    #[error("refresh token refused")]
    RefreshTokenRefused,
    /// Too many failed logins for this name.
    #[error("login throttled for {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("password refused by the policy: {0}")]
    WeakPassword(PasswordPolicyError),
    #[error("username taken")]
    UsernameTaken,
    #[error("e-mail address taken")]
    EmailTaken,
    /// The user has no such resource (or it is another user's).
    #[error("not found")]
    NotFound,
    /// The credential is valid but may not do this (an API key managing credentials).
    #[error("a session is required")]
    SessionRequired,
    /// A refresh cookie without its session's CSRF token.
    #[error("CSRF token missing or wrong")]
    CsrfRefused,
    /// The password was right, and the account has a second factor: the login goes on at
    /// `/auth/mfa` with this single-use token.
    #[error("second factor required")]
    MfaRequired { mfa_token: String },
    /// An `mfa_token` that is unknown, expired or used, or a wrong code with it.
    #[error("second factor refused")]
    MfaRefused,
    /// A wrong TOTP or recovery code, where the account is managed.
    #[error("wrong code")]
    WrongCode,
    /// TOTP is already on for the account.
    #[error("second factor already enabled")]
    MfaAlreadyEnabled,
    /// No SMTP server is configured: the e-mail flows are off.
    #[error("e-mail is not configured")]
    EmailUnavailable,
    /// A reset or verification token that is unknown, used, expired or void.
    #[error("e-mail token refused")]
    InvalidEmailToken,
    /// The account has no e-mail address to verify.
    #[error("no e-mail address")]
    NoEmail,
    #[error("e-mail address already verified")]
    AlreadyVerified,
    /// The password was right, but logins need a verified address and this account has none.
    #[error("e-mail address not verified")]
    EmailNotVerified,
    /// Password hashing is at capacity.
    #[error("password hashing overloaded")]
    Overloaded,
    #[error(transparent)]
    Unavailable(RepoError),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Conflict(UniqueField::Username) => Error::UsernameTaken,
            RepoError::Conflict(UniqueField::Email) => Error::EmailTaken,
            e @ RepoError::Unavailable(_) => Error::Unavailable(e),
            e @ RepoError::Other(_) => Error::Internal(e.into()),
        }
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Overloaded => Error::Overloaded,
            PoolError::Stopped => Error::Internal(e.into()),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(e)
    }
}

/// What a refresh came to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is rotated away and this is its successor.
    Rotated(TokenPair),
    /// The token was rotated away within the grace window and its successor is still
    /// current: that successor again, with a fresh access token.
    Grace(TokenPair),
    /// A token rotated away earlier, or an older ancestor: the session is now revoked.
    Reused,
    /// No such token.
    Unknown,
    /// The session is past its idle or absolute lifetime.
    Expired,
    /// The session was already ended, or the account is disabled.
    Revoked,
}

/// An authenticated request: the user, and what it presented.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub credential: Credential,
}

/// What a request authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of this session.
    Session(Uuid),
    /// This API key.
    ApiKey(Uuid),
}

/// A new API key: what lists show of it, and the key itself, shown this once.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub info: ApiKeyInfo,
    pub key: ApiKey,
}

#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repo,
    hasher: PasswordHasher,
    /// The signing and verifying keys; replaced when a rotation is picked up
    /// ([`AuthService::reload_keys`]).
    keys: RwLock<Arc<TokenKeys>>,
    /// The keys are Ed25519 keys kept in the database (not `AUTHD_JWT_SECRET`'s HS256).
    stored_keys: bool,
    derivation_key: DerivationKey,
    device_key: DeviceKey,
    csrf_key: CsrfKey,
    pseudonyms: PseudonymKey,
    /// Seals and opens the TOTP secrets.
    vault: Vault,
    /// The issuer authenticator apps list TOTP accounts under.
    totp_issuer: String,
    /// Derives the tokens of reset and verification mails.
    email_key: EmailTokenKey,
    /// An SMTP server is configured: the e-mail flows are on.
    mail_on: bool,
    /// Logins need a verified address.
    require_verified_email: bool,
    /// Wakes this replica's mail sender when a mail is queued.
    outbox_wake: Arc<tokio::sync::Notify>,
    policy: TokenPolicy,
    clock: Arc<dyn Clock>,
}

impl AuthService {
    /// Opens the stored secrets with the master key (see [`Vault::open`]) and loads (or, on a
    /// new database, creates) the signing keys and the server keys.
    pub async fn load(
        repo: Repo,
        hasher: PasswordHasher,
        clock: Arc<dyn Clock>,
        config: &Config,
    ) -> Result<Self, VaultError> {
        let now = clock.now();
        let vault = Vault::open(repo.clone(), config.master_key.clone()).await?;
        let policy = TokenPolicy::from_config(config);
        let keys = match &config.jwt_secret {
            Some(secret) => TokenKeys::hs256(
                secret.expose_secret().as_bytes(),
                &config.issuer,
                &config.audience,
            ),
            None => {
                let stored = vault
                    .signing_keys_or_insert(TokenKeys::generate_ed25519(now)?)
                    .await?;
                verification_keys(&stored, now, &policy, &config.issuer, &config.audience)?
            }
        };
        let random_key = || DeviceKey::generate().to_vec();
        let derivation_key = vault
            .server_secret(DERIVATION_KEY_NAME, random_key(), now)
            .await?;
        let device_key = vault
            .server_secret(DEVICE_KEY_NAME, random_key(), now)
            .await?;
        let pseudonyms = vault
            .server_secret(PSEUDONYM_KEY_NAME, random_key(), now)
            .await?;
        let csrf_key = vault
            .server_secret(CSRF_KEY_NAME, random_key(), now)
            .await?;
        let email_key = vault
            .server_secret(EMAIL_TOKEN_KEY_NAME, random_key(), now)
            .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                repo,
                hasher,
                keys: RwLock::new(Arc::new(keys)),
                stored_keys: config.jwt_secret.is_none(),
                derivation_key: DerivationKey::from_bytes(&derivation_key)?,
                device_key: DeviceKey::from_bytes(&device_key)?,
                csrf_key: CsrfKey::from_bytes(&csrf_key)?,
                pseudonyms: PseudonymKey::from_bytes(&pseudonyms)?,
                vault,
                totp_issuer: totp::issuer_label(&config.issuer),
                email_key: EmailTokenKey::from_bytes(&email_key)?,
                mail_on: config.smtp_url.is_some(),
                require_verified_email: config.require_verified_email,
                outbox_wake: Arc::new(tokio::sync::Notify::new()),
                policy,
                clock,
            }),
        })
    }

    /// The keys in force now.
    pub fn keys(&self) -> Arc<TokenKeys> {
        match self.inner.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the stored signing keys again and puts them in force if they changed: a key
    /// made active by `authd keys rotate` on any replica signs from now on, and keys retired
    /// longer ago than the access-token lifetime stop verifying (and leave the JWK set).
    /// Returns whether anything changed. Run every [`KEY_RELOAD_INTERVAL`].
    pub async fn reload_keys(&self) -> Result<bool, Error> {
        if !self.inner.stored_keys {
            return Ok(false);
        }
        let stored = self
            .inner
            .vault
            .signing_keys()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        let current = self.keys();
        let fresh = verification_keys(
            &stored,
            self.now(),
            &self.inner.policy,
            current.issuer(),
            current.audience(),
        )?;
        if fresh.same_keys_as(&current) {
            return Ok(false);
        }
        let mut keys = match self.inner.keys.write() {
            Ok(keys) => keys,
            Err(poisoned) => poisoned.into_inner(),
        };
        *keys = Arc::new(fresh);
        Ok(true)
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Hashing jobs running or waiting, and the database pool's (open, idle) connections.
    pub fn gauges(&self) -> (usize, (u32, usize)) {
        (
            self.inner.hasher.jobs_pending(),
            self.inner.repo.pool_connections(),
        )
    }

    /// `Ok` when the database answers.
    pub async fn ready(&self) -> Result<(), Error> {
        Ok(self.inner.repo.ping().await?)
    }

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
    async fn open_session(
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

    /// An event of `user_id` caused now by `client`.
    fn event<'a>(&self, user_id: Uuid, kind: EventKind, client: &'a ClientInfo) -> NewEvent<'a> {
        NewEvent {
            user_id,
            kind,
            at: self.now(),
            ip: client.ip.as_deref(),
            user_agent: client.user_agent.as_deref(),
        }
    }

    /// Logs a refused login with the client's address and a keyed hash of the name tried,
    /// never the name itself.
    fn log_refusal(&self, name: &str, client: &ClientInfo, device: bool, what: &'static str) {
        tracing::info!(
            client_ip = %client.ip.as_deref().unwrap_or("-"),
            login = %self.inner.pseudonyms.tag(name),
            device,
            "{what}"
        );
    }

    /// Deletes what has expired: sessions past their idle or absolute end (with their
    /// refresh-token hashes), and attempt counts untouched for a day. Run hourly.
    pub async fn housekeeping(&self) -> Result<Pruned, Error> {
        let now = self.now();
        let repo = &self.inner.repo;
        // Mails are kept two days: the hourly cap counts them, and every token has expired by then.
        let (email_tokens, mails) = repo.prune_mail(now, now - TimeDelta::days(2)).await?;
        Ok(Pruned {
            sessions: repo.prune_sessions(now).await?,
            attempt_counts: repo.prune_attempts(now - TimeDelta::days(1)).await?,
            events: repo
                .prune_events(now - self.inner.policy.event_retention)
                .await?,
            mfa_challenges: repo.prune_challenges(now).await?,
            email_tokens,
            mails,
        })
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

    /// The refresh grant: rotates the presented token (see the module docs of
    /// [`crate::auth::refresh`] and the contract's "Token semantics").
    pub async fn refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<RefreshOutcome, Error> {
        let result = self.rotate(presented, client, csrf).await;
        let outcome = match &result {
            Ok(RefreshOutcome::Rotated(_)) => "rotated",
            Ok(RefreshOutcome::Grace(_)) => "grace",
            Ok(RefreshOutcome::Reused) => "reused",
            Ok(RefreshOutcome::Unknown) => "unknown",
            Ok(RefreshOutcome::Expired) => "expired",
            Ok(RefreshOutcome::Revoked) => "revoked",
            Err(Error::CsrfRefused) => "csrf_refused",
            Err(_) => "error",
        };
        metrics::counter!("authd_refreshes_total", "outcome" => outcome).increment(1);
        result
    }

    async fn rotate(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<RefreshOutcome, Error> {
        let Some(token) = RefreshToken::parse(presented) else {
            return Ok(RefreshOutcome::Unknown);
        };
        let hash = token.hash();
        let now = self.now();
        let Some(record) = self.inner.repo.find_refresh(&hash).await? else {
            return Ok(RefreshOutcome::Unknown);
        };
        self.check_csrf(record.session_id, csrf)?;
        let child = token.child(&self.inner.derivation_key);
        let mut record = record;
        let mut judgement = self.judge(&record, now);
        if judgement == Judgement::Rotate {
            let idle_expires_at = (now + self.inner.policy.refresh_ttl).min(record.expires_at);
            let rotation = Rotation {
                session_id: record.session_id,
                from_generation: record.token_generation,
                new_token_hash: child.hash(),
                now,
                idle_expires_at,
            };
            if self.inner.repo.rotate(rotation).await? {
                let pair = self.token_pair(record.session(), now, &child, idle_expires_at)?;
                return Ok(RefreshOutcome::Rotated(pair));
            }
            // A concurrent refresh of the same token won: judge what it left behind (within
            // the grace window, its result again).
            record = match self.inner.repo.find_refresh(&hash).await? {
                Some(record) => record,
                None => return Ok(RefreshOutcome::Unknown),
            };
            judgement = self.judge(&record, now);
        }
        Ok(match judgement {
            Judgement::Rotate => {
                return Err(anyhow::anyhow!("a lost rotation left its session unchanged").into())
            }
            Judgement::Grace => {
                // The child of the presented token is the session's current token.
                let pair =
                    self.token_pair(record.session(), now, &child, record.idle_expires_at)?;
                RefreshOutcome::Grace(pair)
            }
            Judgement::Reused => {
                // The chain has leaked (RFC 9700 §4.14).
                self.inner
                    .repo
                    .revoke_session(
                        record.session_id,
                        "refresh_token_reuse",
                        now,
                        &self.event(record.user_id, EventKind::RefreshReuseDetected, client),
                    )
                    .await?;
                tracing::warn!(
                    user_id = %record.user_id,
                    session_id = %record.session_id,
                    "refresh token reuse detected; session revoked"
                );
                RefreshOutcome::Reused
            }
            Judgement::Expired => RefreshOutcome::Expired,
            Judgement::Revoked => RefreshOutcome::Revoked,
        })
    }

    /// What a presented refresh token's record calls for at `now`.
    fn judge(&self, record: &RefreshRecord, now: DateTime<Utc>) -> Judgement {
        judge(record, now, self.inner.policy.refresh_grace)
    }

    /// Ends the session a refresh token belongs to (any token of the chain will do).
    /// Ends the session of a refresh token. Refused when the token is unknown, or its
    /// session has already ended or expired (of two logouts at once, one succeeds).
    pub async fn logout_with_refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<(), Error> {
        let token = RefreshToken::parse(presented).ok_or(Error::RefreshTokenRefused)?;
        let record = self
            .inner
            .repo
            .find_refresh(&token.hash())
            .await?
            .ok_or(Error::RefreshTokenRefused)?;
        self.check_csrf(record.session_id, csrf)?;
        if !self
            .revoke(record.user_id, record.session_id, client)
            .await?
        {
            return Err(Error::RefreshTokenRefused);
        }
        Ok(())
    }

    /// Ends the session of an access token; refused when it has already ended or expired.
    pub async fn end_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self.revoke(user_id, session_id, client).await? {
            return Err(Error::AccessTokenRefused(TokenRefusal::SessionEnded));
        }
        Ok(())
    }

    /// Whether this call ended the session (it was live until now).
    async fn revoke(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<bool, Error> {
        let ended = self
            .inner
            .repo
            .revoke_session(
                session_id,
                "logout",
                self.now(),
                &self.event(user_id, EventKind::Logout, client),
            )
            .await?;
        if ended {
            tracing::info!(user_id = %user_id, session_id = %session_id, "logout");
        }
        Ok(ended)
    }

    pub async fn end_all_sessions(&self, user_id: Uuid, client: &ClientInfo) -> Result<(), Error> {
        let ended = self
            .inner
            .repo
            .revoke_user_sessions(
                user_id,
                "logout_all",
                self.now(),
                &self.event(user_id, EventKind::Logout, client),
            )
            .await?;
        tracing::info!(user_id = %user_id, sessions = ended, "logout from all sessions");
        Ok(())
    }

    /// Checks a presented credential: an API key (see [`crate::auth::api_key`]) or an access
    /// token. Either is checked against the database on every request, so that a logout or
    /// a revoked key holds at once on every replica.
    pub async fn authenticate(&self, presented: &str) -> Result<Authenticated, Error> {
        if api_key::looks_like_key(presented) {
            return self.authenticate_api_key(presented).await;
        }
        self.authenticate_access_token(presented).await
    }

    async fn authenticate_api_key(&self, presented: &str) -> Result<Authenticated, Error> {
        // A key with a bad checksum (a typo, a truncated paste) costs no database read.
        let hash =
            api_key::parse(presented).ok_or(Error::AccessTokenRefused(TokenRefusal::Invalid))?;
        let now = self.now();
        let found = self
            .inner
            .repo
            .api_key_user(hash, now)
            .await?
            .ok_or(Error::AccessTokenRefused(TokenRefusal::Invalid))?;
        if found
            .last_used_at
            .is_none_or(|at| at < now - LAST_USED_PRECISION)
        {
            // Off the request's path: the answer does not wait for the write.
            let repo = self.inner.repo.clone();
            tokio::spawn(async move {
                if let Err(e) = repo.touch_api_key(found.key_id, now).await {
                    tracing::debug!(error = %e, "recording an API key's use failed");
                }
            });
        }
        Ok(Authenticated {
            user: found.user,
            credential: Credential::ApiKey(found.key_id),
        })
    }

    /// Creates an API key for `user_id`, valid for `expires_in_days` if given.
    pub async fn create_api_key(
        &self,
        user_id: Uuid,
        name: &str,
        expires_in_days: Option<u32>,
        client: &ClientInfo,
    ) -> Result<CreatedApiKey, Error> {
        let now = self.now();
        let key = ApiKey::generate();
        let info = self
            .inner
            .repo
            .insert_api_key(
                &NewApiKey {
                    id: Uuid::new_v4(),
                    user_id,
                    name,
                    prefix: key.shown(),
                    key_hash: &key.hash(),
                    created_at: now,
                    expires_at: expires_in_days.map(|days| now + TimeDelta::days(days.into())),
                },
                &self.event(user_id, EventKind::ApiKeyCreated, client),
            )
            .await?;
        tracing::info!(user_id = %user_id, key_id = %info.id, "API key created");
        Ok(CreatedApiKey { info, key })
    }

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

    /// The user's live sessions, newest first.
    pub async fn sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, Error> {
        Ok(self.inner.repo.live_sessions(user_id, self.now()).await?)
    }

    /// Ends one of the user's sessions; [`Error::NotFound`] if it has no such live session.
    pub async fn end_own_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self
            .inner
            .repo
            .revoke_own_session(
                user_id,
                session_id,
                self.now(),
                &self.event(user_id, EventKind::SessionRevoked, client),
            )
            .await?
        {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %user_id, session_id = %session_id, "session revoked by its user");
        Ok(())
    }

    /// The user's live keys, newest first.
    pub async fn api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKeyInfo>, Error> {
        Ok(self.inner.repo.api_keys(user_id, self.now()).await?)
    }

    /// Revokes one of the user's keys; [`Error::NotFound`] if it has no such live key.
    pub async fn revoke_api_key(
        &self,
        user_id: Uuid,
        key_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self
            .inner
            .repo
            .revoke_api_key(
                user_id,
                key_id,
                self.now(),
                &self.event(user_id, EventKind::ApiKeyRevoked, client),
            )
            .await?
        {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %user_id, key_id = %key_id, "API key revoked");
        Ok(())
    }

    /// For a refresh token that came in a cookie (`csrf` is then the `X-CSRF-Token` header,
    /// `Some("")` when absent): the session's CSRF token must match.
    fn check_csrf(&self, session_id: Uuid, csrf: Option<&str>) -> Result<(), Error> {
        match csrf {
            Some(presented) if !self.inner.csrf_key.verify(session_id, presented) => {
                Err(Error::CsrfRefused)
            }
            _ => Ok(()),
        }
    }

    /// Checks an access token and that its session is still live.
    async fn authenticate_access_token(&self, access_token: &str) -> Result<Authenticated, Error> {
        let claims = self
            .keys()
            .verify(access_token, self.now().timestamp())
            .map_err(|e| {
                Error::AccessTokenRefused(match e {
                    TokenError::Expired => TokenRefusal::Expired,
                    TokenError::Invalid => TokenRefusal::Invalid,
                })
            })?;
        let user = self
            .inner
            .repo
            .session_user(claims.sid, claims.sub)
            .await?
            .ok_or(Error::AccessTokenRefused(TokenRefusal::SessionEnded))?;
        Ok(Authenticated {
            user,
            credential: Credential::Session(claims.sid),
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
        let keys = self.keys();
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
            expires_in: (exp - now).num_seconds().max(0),
            refresh_token: refresh.encode(),
            refresh_expires_in: (idle_expires_at - now).num_seconds().max(0),
            csrf_token: self.inner.csrf_key.token(session.session_id),
        })
    }
}

/// What a presented refresh token's record calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    /// It is the session's current token, within its lifetimes: rotate it.
    Rotate,
    /// Its child is current and it was rotated within the grace window: answer with the child.
    Grace,
    /// Rotated away earlier, or an older ancestor.
    Reused,
    /// Past the session's idle or absolute lifetime.
    Expired,
    /// The session was ended or the account disabled.
    Revoked,
}

/// The refresh rules of the contract ("Token semantics"), as a function of the stored state.
fn judge(record: &RefreshRecord, now: DateTime<Utc>, grace: Duration) -> Judgement {
    if record.revoked_at.is_some() || record.disabled_at.is_some() {
        return Judgement::Revoked;
    }
    if now >= record.expires_at {
        return Judgement::Expired;
    }
    if record.token_generation == record.current_generation {
        return if now >= record.idle_expires_at {
            Judgement::Expired
        } else {
            Judgement::Rotate
        };
    }
    // `now` may have been read before a concurrent rotation happened, so the age can be
    // negative: that is the very case the grace window exists for.
    let window = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
    let just_rotated = record.token_generation + 1 == record.current_generation
        && !grace.is_zero()
        && now - record.rotated_at <= window;
    if just_rotated {
        Judgement::Grace
    } else {
        Judgement::Reused
    }
}

/// How often every replica reads the signing keys again, so that a rotation is in force
/// everywhere within a minute.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The stored keys that sign or still verify at `now`: the active one, and those retired
/// within the access-token lifetime.
fn verification_keys(
    stored: &[crate::domain::StoredSigningKey],
    now: DateTime<Utc>,
    policy: &TokenPolicy,
    issuer: &str,
    audience: &str,
) -> anyhow::Result<TokenKeys> {
    let lifetime = TimeDelta::from_std(policy.access_ttl).unwrap_or(TimeDelta::MAX);
    let in_force: Vec<_> = stored
        .iter()
        .filter(|key| key.verifies_at(now, lifetime))
        .cloned()
        .collect();
    TokenKeys::ed25519(&in_force, issuer, audience)
}

/// The outcome label of a login attempt or a second step, for the metrics.
fn attempt_outcome(result: &Result<LoginSuccess, Error>) -> &'static str {
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
const LOCK_RULE: LockRule = LockRule {
    free: FREE_FAILURES,
    max_secs: MAX_LOCK.as_secs() as i64,
};

/// The attempt-count subject of a normalized login name (a device's is `device:<id>`).
fn name_subject(normalized: &str) -> String {
    format!("name:{normalized}")
}

/// The refusal of an attempt on a subject locked until `until`, rounded up to whole seconds.
fn throttled(until: DateTime<Utc>, now: DateTime<Utc>) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token_generation: i64, current_generation: i64) -> (RefreshRecord, DateTime<Utc>) {
        let now = Utc::now();
        let record = RefreshRecord {
            session_id: Uuid::new_v4(),
            token_generation,
            current_generation,
            user_id: Uuid::new_v4(),
            username: "alice".into(),
            rotated_at: now,
            idle_expires_at: now + TimeDelta::hours(1),
            expires_at: now + TimeDelta::hours(2),
            revoked_at: None,
            disabled_at: None,
        };
        (record, now)
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn the_current_token_is_rotated_until_its_idle_or_absolute_end() {
        let (mut r, now) = record(3, 3);
        assert_eq!(judge(&r, now, GRACE), Judgement::Rotate);
        assert_eq!(
            judge(&r, now + TimeDelta::hours(1), GRACE),
            Judgement::Expired
        );
        r.idle_expires_at = now + TimeDelta::hours(5);
        assert_eq!(
            judge(&r, now + TimeDelta::hours(2), GRACE),
            Judgement::Expired
        );
    }

    #[test]
    fn the_parent_within_the_window_gets_grace_and_anything_older_is_reuse() {
        let (r, now) = record(2, 3);
        assert_eq!(judge(&r, now, GRACE), Judgement::Grace);
        assert_eq!(
            judge(&r, now + TimeDelta::seconds(10), GRACE),
            Judgement::Grace
        );
        assert_eq!(
            judge(&r, now + TimeDelta::seconds(11), GRACE),
            Judgement::Reused
        );
        // Read before the rotation that beat it: a negative age is within the window.
        assert_eq!(
            judge(&r, now - TimeDelta::seconds(1), GRACE),
            Judgement::Grace
        );
        assert_eq!(
            judge(&r, now, Duration::ZERO),
            Judgement::Reused,
            "grace off"
        );
        let (grandparent, now) = record(1, 3);
        assert_eq!(judge(&grandparent, now, GRACE), Judgement::Reused);
    }

    #[test]
    fn an_ended_session_or_disabled_account_is_revoked_before_anything_else() {
        let (mut r, now) = record(1, 3);
        r.revoked_at = Some(now);
        assert_eq!(judge(&r, now, GRACE), Judgement::Revoked);
        let (mut r, now) = record(3, 3);
        r.disabled_at = Some(now);
        assert_eq!(judge(&r, now, GRACE), Judgement::Revoked);
    }

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
