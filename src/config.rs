//! Settings from the environment (and `.env`), parsed and checked once at start.
//!
//! Each setting is declared once, in [`Settings`] (clap, with its environment variable and
//! default); [`Config`] is what they become once checked. A bad value is a [`ConfigError`]
//! that names the setting and never echoes a secret.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    str::FromStr,
    time::Duration,
};

use clap::{Args as _, FromArgMatches as _};
use ipnet::IpNet;

use secrecy::{ExposeSecret, SecretString};

use crate::auth::sealing::MasterKey;

/// Minimum length of `AUTHD_JWT_SECRET`, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Which database a `DATABASE_URL` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Config {
    /// May carry a password, so it is kept as a secret.
    pub database_url: SecretString,
    pub backend: Backend,
    pub addr: SocketAddr,
    pub issuer: String,
    pub audience: String,
    /// The base URL clients reach authd at, without a trailing slash: the endpoints named in
    /// the discovery document (and the links of mails) start with it. `None`: the address
    /// the server bound, over plain HTTP.
    pub public_url: Option<String>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub refresh_grace: Duration,
    /// When set, access tokens are HS256 with this secret; otherwise Ed25519 keys from the database.
    pub jwt_secret: Option<SecretString>,
    /// Seals the signing keys and server secrets stored in the database; `None`: in clear.
    pub master_key: Option<MasterKey>,
    /// How long account events are kept, in days.
    pub event_retention_days: u32,
    pub log_format: LogFormat,
    /// Login/registration/refresh attempts per client IP per minute; `None` turns it off.
    pub login_rate_per_min: Option<NonZeroU32>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed by CORS (`https://host[:port]`); empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// The SMTP server of password-reset and verification mail (may hold a password);
    /// `None`: e-mail is off.
    pub smtp_url: Option<SecretString>,
    /// The `From` of authd's mails.
    pub mail_from: String,
    /// Logins of accounts whose address is not verified are refused.
    pub require_verified_email: bool,
    /// A request not answered within this gets `503`.
    pub request_timeout: Duration,
    /// A connection that has not sent a complete request head within this is closed
    /// (slow clients, idle keep-alive connections).
    pub header_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &"[redacted]")
            .field("backend", &self.backend)
            .field("addr", &self.addr)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("public_url", &self.public_url)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("session_max", &self.session_max)
            .field("refresh_grace", &self.refresh_grace)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("master_key", &self.master_key)
            .field("event_retention_days", &self.event_retention_days)
            .field("log_format", &self.log_format)
            .field("login_rate_per_min", &self.login_rate_per_min)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("cors_origins", &self.cors_origins)
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[redacted]"))
            .field("mail_from", &self.mail_from)
            .field("require_verified_email", &self.require_verified_email)
            .field("request_timeout", &self.request_timeout)
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

/// A setting that could not be used. Its `Display` is one line naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

/// Every setting, declared once: its flag, its environment variable, its default and its
/// help (`authd --help` lists them all). Values arrive as text; [`Config::from_settings`]
/// checks them. An empty value counts as unset.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Settings (flags, environment variables or a .env file)")]
pub struct Settings {
    /// sqlite://<file> (created if missing) or postgres://user:password@host/database
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://authd.db",
        hide_env_values = true,
        global = true
    )]
    database_url: String,
    /// Listen address (0.0.0.0:8000 in a container)
    #[arg(
        long,
        env = "AUTHD_ADDR",
        default_value = "127.0.0.1:8000",
        hide_env_values = true,
        global = true
    )]
    addr: String,
    /// `iss` of access tokens
    #[arg(
        long,
        env = "AUTHD_ISSUER",
        default_value = "authd",
        hide_env_values = true,
        global = true
    )]
    issuer: String,
    /// `aud` of access tokens
    #[arg(
        long,
        env = "AUTHD_AUDIENCE",
        default_value = "authd",
        hide_env_values = true,
        global = true
    )]
    audience: String,
    /// Base URL clients reach authd at (behind a proxy, its public address); default
    /// http://<AUTHD_ADDR>
    #[arg(
        long,
        env = "AUTHD_PUBLIC_URL",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    public_url: String,
    /// Access token lifetime, in seconds
    #[arg(
        long,
        env = "AUTHD_ACCESS_TTL_SECS",
        default_value = "1800",
        hide_env_values = true,
        global = true
    )]
    access_ttl_secs: String,
    /// Refresh token idle lifetime, in seconds (14 days)
    #[arg(
        long,
        env = "AUTHD_REFRESH_TTL_SECS",
        default_value = "1209600",
        hide_env_values = true,
        global = true
    )]
    refresh_ttl_secs: String,
    /// Absolute session lifetime, in seconds (90 days)
    #[arg(
        long,
        env = "AUTHD_SESSION_MAX_SECS",
        default_value = "7776000",
        hide_env_values = true,
        global = true
    )]
    session_max_secs: String,
    /// Concurrent-refresh grace window, in seconds, at most 300; 0 turns it off
    #[arg(
        long,
        env = "AUTHD_REFRESH_GRACE_SECS",
        default_value = "10",
        hide_env_values = true,
        global = true
    )]
    refresh_grace_secs: String,
    /// HS256 with this secret (at least 32 bytes); unset: Ed25519 keys kept in the database
    #[arg(
        long,
        env = "AUTHD_JWT_SECRET",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    jwt_secret: String,
    /// 32 bytes in base64 that seal the signing keys and server secrets kept in the database;
    /// unset: they are stored in clear (a warning at start)
    #[arg(
        long,
        env = "AUTHD_MASTER_KEY",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    master_key: String,
    /// Days an account's events are kept (GET /users/me/events), at least 1
    #[arg(
        long,
        env = "AUTHD_EVENT_RETENTION_DAYS",
        default_value = "90",
        hide_env_values = true,
        global = true
    )]
    event_retention_days: String,
    /// Attempts per client IP per minute at the credential endpoints; 0 turns the limit off
    #[arg(
        long,
        env = "AUTHD_LOGIN_RATE_PER_MIN",
        default_value = "20",
        hide_env_values = true,
        global = true
    )]
    login_rate_per_min: String,
    /// CIDRs or addresses of reverse proxies whose X-Forwarded-For is believed, comma-separated
    #[arg(
        long,
        env = "AUTHD_TRUSTED_PROXIES",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    trusted_proxies: String,
    /// Browser origins allowed by CORS, comma-separated; empty: CORS off
    #[arg(
        long,
        env = "AUTHD_CORS_ORIGINS",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    cors_origins: String,
    /// SMTP server for password-reset and verification mail: smtp://host[:port] (plain),
    /// smtp://host?tls=starttls, smtps://host (TLS), with user:password@ if it asks; unset:
    /// e-mail off
    #[arg(
        long,
        env = "AUTHD_SMTP_URL",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    smtp_url: String,
    /// The From of authd's mails
    #[arg(
        long,
        env = "AUTHD_MAIL_FROM",
        default_value = "authd@localhost",
        hide_env_values = true,
        global = true
    )]
    mail_from: String,
    /// true: a correct password of an account whose address is not verified gets 403
    #[arg(
        long,
        env = "AUTHD_REQUIRE_VERIFIED_EMAIL",
        default_value = "false",
        hide_env_values = true,
        global = true
    )]
    require_verified_email: String,
    /// A request not answered within this many seconds gets 503
    #[arg(
        long,
        env = "AUTHD_REQUEST_TIMEOUT_SECS",
        default_value = "10",
        hide_env_values = true,
        global = true
    )]
    request_timeout_secs: String,
    /// A connection without a complete request head within this many seconds is closed
    #[arg(
        long,
        env = "AUTHD_HEADER_TIMEOUT_SECS",
        default_value = "10",
        hide_env_values = true,
        global = true
    )]
    header_timeout_secs: String,
    /// Log lines as text or json
    #[arg(
        long,
        env = "AUTHD_LOG_FORMAT",
        default_value = "text",
        hide_env_values = true,
        global = true
    )]
    log_format: String,
}

impl Settings {
    /// The settings given by `lookup` (variable name → value), and the defaults for the rest;
    /// nothing is read from the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let command = Self::augment_args(clap::Command::new("authd")).no_binary_name(true);
        let mut args = Vec::new();
        for arg in command.get_arguments() {
            let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = name.to_str().and_then(&lookup) {
                args.push(format!("--{long}={value}"));
            }
        }
        // Without `env`, so that only `lookup` is read.
        let matches = command
            .mut_args(|arg| arg.env(None::<&str>))
            .try_get_matches_from(args)
            .expect("every setting takes any text");
        Self::from_arg_matches(&matches).expect("the matches are of these settings")
    }

    /// The default of the setting read from `variable`.
    fn default_of(variable: &str) -> String {
        let command = Self::augment_args(clap::Command::new("authd"));
        let default = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == variable))
            .and_then(|arg| arg.get_default_values().first())
            .and_then(|value| value.to_str())
            .unwrap_or_default()
            .to_owned();
        default
    }
}

/// `AUTHD_PUBLIC_URL`: an http(s) URL with a host, and no query or fragment.
fn parse_public_url(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let valid = rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !rest.contains(['?', '#'])
            && rest.bytes().all(|b| b.is_ascii_graphic())
    });
    if valid {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::new(
            "AUTHD_PUBLIC_URL",
            format!("{url:?} is not a URL like https://auth.example.com"),
        ))
    }
}

impl Config {
    /// Reads the process environment. Call [`load_dotenv`] first to honour a `.env` file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any name → value lookup; unset and empty values take the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_settings(&Settings::from_lookup(lookup))
    }

    /// Checks the settings; the first bad one is a [`ConfigError`] naming its variable.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        // An empty value (e.g. `AUTHD_X=` in a .env file) takes the default.
        let value = |variable: &'static str, given: &str| -> String {
            if given.trim().is_empty() {
                Settings::default_of(variable)
            } else {
                given.to_owned()
            }
        };
        let s = settings;

        let database_url = value("DATABASE_URL", &s.database_url);
        let backend = backend_of(&database_url)?;

        let addr_text = value("AUTHD_ADDR", &s.addr);
        let addr = addr_text.trim().parse().map_err(|_| {
            ConfigError::new(
                "AUTHD_ADDR",
                format!("{addr_text:?} is not an address like 127.0.0.1:8000"),
            )
        })?;

        let issuer = value("AUTHD_ISSUER", &s.issuer);
        let audience = value("AUTHD_AUDIENCE", &s.audience);
        let public_url = match s.public_url.trim().trim_end_matches('/') {
            "" => None,
            url => Some(parse_public_url(url)?),
        };

        let seconds = |variable: &'static str, given: &str, min: u64| {
            parse_seconds(variable, &value(variable, given), min)
        };
        let access_ttl = seconds("AUTHD_ACCESS_TTL_SECS", &s.access_ttl_secs, 1)?;
        let refresh_ttl = seconds("AUTHD_REFRESH_TTL_SECS", &s.refresh_ttl_secs, 1)?;
        let session_max = seconds("AUTHD_SESSION_MAX_SECS", &s.session_max_secs, 1)?;
        let refresh_grace = seconds("AUTHD_REFRESH_GRACE_SECS", &s.refresh_grace_secs, 0)?;
        if refresh_grace > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "AUTHD_REFRESH_GRACE_SECS",
                "must be at most 300 seconds; a long grace window weakens reuse detection",
            ));
        }

        // The secret is taken raw (not trimmed): spaces are bytes of the key like any other.
        let jwt_secret = match s.jwt_secret.as_str() {
            "" => None,
            secret if secret.len() < MIN_JWT_SECRET_BYTES => {
                return Err(ConfigError::new(
                    "AUTHD_JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); generate one with `openssl rand -base64 48`",
                        secret.len()
                    ),
                ));
            }
            secret => Some(SecretString::from(secret.to_owned())),
        };

        let master_key = match s.master_key.trim() {
            "" => None,
            text => Some(
                MasterKey::parse(text)
                    .map_err(|e| ConfigError::new("AUTHD_MASTER_KEY", e.to_string()))?,
            ),
        };

        let retention = value("AUTHD_EVENT_RETENTION_DAYS", &s.event_retention_days);
        let event_retention_days = match retention.trim().parse::<u32>() {
            Ok(days) if (1..=36_500).contains(&days) => days,
            _ => {
                return Err(ConfigError::new(
                    "AUTHD_EVENT_RETENTION_DAYS",
                    format!("{retention:?} is not a whole number of days from 1 to 36500"),
                ))
            }
        };

        let log_format = match value("AUTHD_LOG_FORMAT", &s.log_format).trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "AUTHD_LOG_FORMAT",
                    format!("{other:?} is not one of: text, json"),
                ))
            }
        };

        let request_timeout = seconds("AUTHD_REQUEST_TIMEOUT_SECS", &s.request_timeout_secs, 1)?;
        let header_timeout = seconds("AUTHD_HEADER_TIMEOUT_SECS", &s.header_timeout_secs, 1)?;
        let rate = value("AUTHD_LOGIN_RATE_PER_MIN", &s.login_rate_per_min);
        let login_rate_per_min = match rate.trim().parse::<u32>() {
            Ok(n) => NonZeroU32::new(n),
            Err(_) => {
                return Err(ConfigError::new(
                    "AUTHD_LOGIN_RATE_PER_MIN",
                    format!("{rate:?} is not a whole number (0 turns the limit off)"),
                ))
            }
        };

        let trusted_proxies = list(&s.trusted_proxies)
            .map(|item| {
                // A bare address means just that host.
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "AUTHD_TRUSTED_PROXIES",
                            format!("{item:?} is not an IP address or CIDR like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let cors_origins = list(&s.cors_origins)
            .map(|item| {
                let origin = item.trim_end_matches('/');
                let host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                let valid = host.is_some_and(|h| !h.is_empty() && !h.contains('/'))
                    && origin.bytes().all(|b| b.is_ascii_graphic());
                valid.then(|| origin.to_owned()).ok_or_else(|| {
                    ConfigError::new(
                        "AUTHD_CORS_ORIGINS",
                        format!("{item:?} is not an origin like https://app.example.com"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let smtp_url = match s.smtp_url.trim() {
            "" => None,
            url => {
                let url = SecretString::from(url.to_owned());
                crate::mail::check_smtp_url(&url)
                    .map_err(|e| ConfigError::new("AUTHD_SMTP_URL", e))?;
                Some(url)
            }
        };
        let mail_from = value("AUTHD_MAIL_FROM", &s.mail_from).trim().to_owned();
        crate::mail::check_mail_from(&mail_from)
            .map_err(|e| ConfigError::new("AUTHD_MAIL_FROM", e))?;
        let require_verified_email =
            match value("AUTHD_REQUIRE_VERIFIED_EMAIL", &s.require_verified_email).trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(ConfigError::new(
                        "AUTHD_REQUIRE_VERIFIED_EMAIL",
                        format!("{other:?} is not one of: true, false"),
                    ))
                }
            };

        Ok(Self {
            database_url: SecretString::from(database_url),
            backend,
            addr,
            issuer,
            audience,
            public_url,
            access_ttl,
            refresh_ttl,
            session_max,
            refresh_grace,
            jwt_secret,
            master_key,
            event_retention_days,
            log_format,
            login_rate_per_min,
            trusted_proxies,
            cors_origins,
            smtp_url,
            mail_from,
            require_verified_email,
            request_timeout,
            header_timeout,
        })
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

/// Loads `.env` from the working directory when there is one. A missing file is fine; a
/// malformed one is an error (naming the file, not its contents).
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(_, line)) => Err(ConfigError::new(
            ".env",
            format!("cannot parse line {line}"),
        )),
        Err(_) => Err(ConfigError::new(".env", "cannot be read")),
    }
}

fn backend_of(url: &str) -> Result<Backend, ConfigError> {
    // Only the scheme is shown in errors: the rest of the URL may hold a password.
    let backend = if url.starts_with("sqlite:") {
        match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
            Err(_) => Err("is not a valid sqlite:// URL"),
            // Its data would vanish on restart, and the direct readers need a file to open.
            Ok(options)
                if url.contains(":memory:")
                    || url.contains("mode=memory")
                    || options.get_filename().as_os_str().is_empty() =>
            {
                Err("names an in-memory SQLite database; authd needs a file (sqlite://authd.db)")
            }
            Ok(_) => Ok(Backend::Sqlite),
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        sqlx::postgres::PgConnectOptions::from_str(url)
            .map(|_| Backend::Postgres)
            .map_err(|_| "is not a valid postgres:// URL")
    } else {
        Err("must start with sqlite:// or postgres://")
    };
    backend.map_err(|reason| ConfigError::new("DATABASE_URL", reason))
}

/// The comma- or space-separated items of a list setting.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split([',', ' ']).filter(|item| !item.is_empty())
}

fn parse_seconds(name: &'static str, raw: &str, min: u64) -> Result<Duration, ConfigError> {
    // Capped at 10 years so that adding it to "now" can never overflow a timestamp.
    const MAX: u64 = 10 * 365 * 24 * 3600;
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=MAX).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(ConfigError::new(
            name,
            format!("{raw:?} is not a whole number of seconds from {min} to {MAX}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url(), "sqlite://authd.db");
        assert_eq!(c.backend, Backend::Sqlite);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8000");
        assert_eq!((c.issuer.as_str(), c.audience.as_str()), ("authd", "authd"));
        assert_eq!(c.access_ttl, Duration::from_secs(1800));
        assert_eq!(c.refresh_ttl, Duration::from_secs(1_209_600));
        assert_eq!(c.session_max, Duration::from_secs(7_776_000));
        assert_eq!(c.refresh_grace, Duration::from_secs(10));
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.public_url, None);
        let c = config(&[("AUTHD_PUBLIC_URL", "https://auth.example.com/")]).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://auth.example.com"));
        assert!(c.smtp_url.is_none(), "e-mail is off unless configured");
        assert_eq!(c.mail_from, "authd@localhost");
        assert!(!c.require_verified_email);
    }

    #[test]
    fn the_smtp_url_is_checked_and_kept_secret() {
        let c = config(&[
            ("AUTHD_SMTP_URL", "smtps://mailer:hunter2@mail.example.com"),
            ("AUTHD_MAIL_FROM", "Example <auth@example.com>"),
            ("AUTHD_REQUIRE_VERIFIED_EMAIL", "true"),
        ])
        .unwrap();
        assert!(c.smtp_url.is_some());
        assert!(c.require_verified_email);
        assert!(!format!("{c:?}").contains("hunter2"));
        let err =
            config(&[("AUTHD_SMTP_URL", "ftp://mailer:hunter2@mail.example.com")]).unwrap_err();
        assert_eq!(err.setting, "AUTHD_SMTP_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn postgres_urls_select_postgres() {
        let c = config(&[("DATABASE_URL", "postgres://postgres@127.0.0.1/test")]).unwrap();
        assert_eq!(c.backend, Backend::Postgres);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("AUTHD_ADDR", "localhost"),
            ("AUTHD_ACCESS_TTL_SECS", "-5"),
            ("AUTHD_ACCESS_TTL_SECS", "0"),
            ("AUTHD_REFRESH_GRACE_SECS", "ten"),
            ("AUTHD_LOG_FORMAT", "xml"),
            ("AUTHD_PUBLIC_URL", "auth.example.com"),
            ("AUTHD_PUBLIC_URL", "https://auth.example.com/?x=1"),
            ("AUTHD_SMTP_URL", "mail.example.com:25"),
            ("AUTHD_MAIL_FROM", "not an address"),
            ("AUTHD_REQUIRE_VERIFIED_EMAIL", "yes please"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.setting, name, "{value}");
            assert!(err.to_string().contains(name));
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn rate_limit_proxies_and_origins() {
        let c = config(&[]).unwrap();
        assert_eq!(c.login_rate_per_min.map(|n| n.get()), Some(20));
        assert!(c.trusted_proxies.is_empty() && c.cors_origins.is_empty());
        let c = config(&[
            ("AUTHD_LOGIN_RATE_PER_MIN", "0"),
            ("AUTHD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"),
            (
                "AUTHD_CORS_ORIGINS",
                "https://app.example.com http://localhost:3000/",
            ),
        ])
        .unwrap();
        assert_eq!(c.login_rate_per_min, None);
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.trusted_proxies[1].contains(&"192.168.1.7".parse::<IpAddr>().unwrap()));
        assert_eq!(c.cors_origins[1], "http://localhost:3000");
        for (name, bad) in [
            ("AUTHD_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("AUTHD_TRUSTED_PROXIES", "proxy.local"),
            ("AUTHD_CORS_ORIGINS", "app.example.com"),
            ("AUTHD_CORS_ORIGINS", "https://app.example.com/path"),
            ("AUTHD_LOGIN_RATE_PER_MIN", "lots"),
        ] {
            assert_eq!(config(&[(name, bad)]).unwrap_err().setting, name, "{bad}");
        }
    }

    #[test]
    fn empty_values_take_the_default() {
        let c = config(&[
            ("AUTHD_ACCESS_TTL_SECS", ""),
            ("AUTHD_ADDR", "  "),
            ("AUTHD_JWT_SECRET", ""),
        ])
        .unwrap();
        assert_eq!(c.access_ttl, Duration::from_secs(1800));
        assert_eq!(c.addr.to_string(), "127.0.0.1:8000");
        assert!(c.jwt_secret.is_none());
    }

    #[test]
    fn an_in_memory_sqlite_database_is_refused() {
        for url in ["sqlite::memory:", "sqlite://a.db?mode=memory", "sqlite://"] {
            let err = config(&[("DATABASE_URL", url)]).unwrap_err();
            assert_eq!(err.setting, "DATABASE_URL", "{url}");
        }
    }

    #[test]
    fn grace_zero_is_allowed() {
        let c = config(&[("AUTHD_REFRESH_GRACE_SECS", "0")]).unwrap();
        assert_eq!(c.refresh_grace, Duration::ZERO);
    }

    #[test]
    fn short_secret_is_refused_without_echoing_it() {
        let err = config(&[("AUTHD_JWT_SECRET", "hunter2-hunter2")]).unwrap_err();
        assert_eq!(err.setting, "AUTHD_JWT_SECRET");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let c = config(&[
            ("AUTHD_JWT_SECRET", secret),
            ("DATABASE_URL", "postgres://u:pw-in-url@localhost/db"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(secret));
        assert!(!shown.contains("pw-in-url"));
    }
}
