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
    auth::sealing::MasterKey,
    auth::{
        csrf::{CsrfKey, CSRF_KEY_NAME},
        device::{DeviceKey, DEVICE_KEY_NAME},
        email_token::{EmailTokenKey, EMAIL_TOKEN_KEY_NAME},
        pseudonym::{PseudonymKey, PSEUDONYM_KEY_NAME},
        refresh::{DerivationKey, DERIVATION_KEY_NAME},
        totp, PasswordHasher, TokenKeys,
    },
    clock::Clock,
    domain::{EventKind, NewEvent},
    repo::Repo,
};

mod account;
mod api_keys;
mod authenticate;
mod email;
mod error;
mod housekeeping;
mod login;
mod mfa;
pub mod outbox;
mod refresh;
mod register;
mod secrets;
mod sessions;
mod tokens;

pub use account::ProfileChange;
pub use api_keys::CreatedApiKey;
pub use authenticate::{Authenticated, Credential, TokenRefusal};
pub use email::MAILS_PER_HOUR;
pub use error::Error;
pub use housekeeping::Pruned;
pub use login::{lock_delay, LoginSuccess, FREE_FAILURES, MAX_LOCK};
pub use mfa::TotpEnrolment;
pub use refresh::RefreshOutcome;
pub use register::Registration;
pub use secrets::{Vault, VaultError};
pub use tokens::{TokenPair, TokenPolicy};

use login::{attempt_outcome, name_subject, throttled, LOCK_RULE};
use tokens::SessionRef;

/// Where a login came from, kept with the session.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What the service needs of the settings.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub policy: TokenPolicy,
    /// `iss` and `aud` of access tokens; the issuer also labels TOTP accounts.
    pub issuer: String,
    pub audience: String,
    /// HS256 with this secret; `None`: Ed25519 keys stored in the database.
    pub jwt_secret: Option<SecretString>,
    /// Seals the stored keys and secrets; `None`: they are kept in clear.
    pub master_key: Option<MasterKey>,
    /// An SMTP server is configured: the e-mail flows are on.
    pub mail_on: bool,
    /// Logins need a verified address.
    pub require_verified_email: bool,
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
        settings: &ServiceSettings,
    ) -> Result<Self, VaultError> {
        let s = settings;
        let now = clock.now();
        let vault = Vault::open(repo.clone(), s.master_key.clone()).await?;
        let policy = s.policy.clone();
        let keys = match &s.jwt_secret {
            Some(secret) => {
                TokenKeys::hs256(secret.expose_secret().as_bytes(), &s.issuer, &s.audience)
            }
            None => {
                let stored = vault
                    .signing_keys_or_insert(TokenKeys::generate_ed25519(now)?)
                    .await?;
                verification_keys(&stored, now, &policy, &s.issuer, &s.audience)?
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
                stored_keys: s.jwt_secret.is_none(),
                derivation_key: DerivationKey::from_bytes(&derivation_key)?,
                device_key: DeviceKey::from_bytes(&device_key)?,
                csrf_key: CsrfKey::from_bytes(&csrf_key)?,
                pseudonyms: PseudonymKey::from_bytes(&pseudonyms)?,
                vault,
                totp_issuer: totp::issuer_label(&s.issuer),
                email_key: EmailTokenKey::from_bytes(&email_key)?,
                mail_on: s.mail_on,
                require_verified_email: s.require_verified_email,
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
