//! Settings from the environment (and `.env`), parsed and checked once at start.
//!
//! Every setting has a default except the secret; a bad value is a [`ConfigError`] that names
//! the setting and never echoes a secret.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    str::FromStr,
    time::Duration,
};

use axum::http::HeaderValue;
use ipnet::IpNet;

use secrecy::{ExposeSecret, SecretString};

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
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub refresh_grace: Duration,
    /// When set, access tokens are HS256 with this secret; otherwise Ed25519 keys from the database.
    pub jwt_secret: Option<SecretString>,
    pub log_format: LogFormat,
    /// Login/registration/refresh attempts per client IP per minute; `None` turns it off.
    pub login_rate_per_min: Option<NonZeroU32>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<HeaderValue>,
    /// A request not answered within this gets `503`.
    pub request_timeout: Duration,
    /// A connection that has not sent a complete request head within this is closed
    /// (slow clients, idle keep-alive connections).
    pub header_timeout: Duration,
}

/// Default of `AUTHD_LOGIN_RATE_PER_MIN`: generous for people (who rarely mistype a password
/// ten times a minute), tight for a script trying thousands.
pub const DEFAULT_LOGIN_RATE_PER_MIN: u32 = 20;

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
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("session_max", &self.session_max)
            .field("refresh_grace", &self.refresh_grace)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("log_format", &self.log_format)
            .field("login_rate_per_min", &self.login_rate_per_min)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("cors_origins", &self.cors_origins)
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

impl Config {
    /// Reads the process environment. Call [`load_dotenv`] first to honour a `.env` file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any name → value lookup; unset and empty values take the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://authd.db".to_owned());
        let backend = backend_of(&database_url)?;

        let addr = match get("AUTHD_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "AUTHD_ADDR",
                    format!("{v:?} is not an address like 127.0.0.1:8000"),
                )
            })?,
        };

        let issuer = get("AUTHD_ISSUER").unwrap_or_else(|| "authd".to_owned());
        let audience = get("AUTHD_AUDIENCE").unwrap_or_else(|| "authd".to_owned());

        let access_ttl = seconds(&get, "AUTHD_ACCESS_TTL_SECS", 1800, 1)?;
        let refresh_ttl = seconds(&get, "AUTHD_REFRESH_TTL_SECS", 1_209_600, 1)?;
        let session_max = seconds(&get, "AUTHD_SESSION_MAX_SECS", 7_776_000, 1)?;
        let refresh_grace = seconds(&get, "AUTHD_REFRESH_GRACE_SECS", 10, 0)?;
        if refresh_grace > Duration::from_secs(300) {
            return Err(ConfigError::new(
                "AUTHD_REFRESH_GRACE_SECS",
                "must be at most 300 seconds; a long grace window weakens reuse detection",
            ));
        }

        // The secret is read raw (not trimmed): spaces are bytes of the key like any other.
        let jwt_secret = match lookup("AUTHD_JWT_SECRET").filter(|v| !v.is_empty()) {
            None => None,
            Some(secret) if secret.len() < MIN_JWT_SECRET_BYTES => {
                return Err(ConfigError::new(
                    "AUTHD_JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); generate one with `openssl rand -base64 48`",
                        secret.len()
                    ),
                ));
            }
            Some(secret) => Some(SecretString::from(secret)),
        };

        let log_format = match get("AUTHD_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "AUTHD_LOG_FORMAT",
                    format!("{other:?} is not one of: text, json"),
                ))
            }
        };

        let request_timeout = seconds(&get, "AUTHD_REQUEST_TIMEOUT_SECS", 10, 1)?;
        let header_timeout = seconds(&get, "AUTHD_HEADER_TIMEOUT_SECS", 10, 1)?;
        let login_rate_per_min = match get("AUTHD_LOGIN_RATE_PER_MIN") {
            None => NonZeroU32::new(DEFAULT_LOGIN_RATE_PER_MIN),
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) => NonZeroU32::new(n),
                Err(_) => {
                    return Err(ConfigError::new(
                        "AUTHD_LOGIN_RATE_PER_MIN",
                        format!("{raw:?} is not a whole number (0 turns the limit off)"),
                    ))
                }
            },
        };

        let trusted_proxies = list(&get, "AUTHD_TRUSTED_PROXIES")
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

        let cors_origins = list(&get, "AUTHD_CORS_ORIGINS")
            .map(|item| {
                let origin = item.trim_end_matches('/');
                let host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                let valid = host.is_some_and(|h| !h.is_empty() && !h.contains('/'));
                HeaderValue::from_str(origin)
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "AUTHD_CORS_ORIGINS",
                            format!("{item:?} is not an origin like https://app.example.com"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            database_url: SecretString::from(database_url),
            backend,
            addr,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            session_max,
            refresh_grace,
            jwt_secret,
            log_format,
            login_rate_per_min,
            trusted_proxies,
            cors_origins,
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
        sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map(|_| Backend::Sqlite)
            .map_err(|_| "is not a valid sqlite:// URL")
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
fn list(get: &impl Fn(&str) -> Option<String>, name: &str) -> impl Iterator<Item = String> {
    get(name)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<Duration, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(Duration::from_secs(default));
    };
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
        assert_eq!(
            c.login_rate_per_min.map(|n| n.get()),
            Some(DEFAULT_LOGIN_RATE_PER_MIN)
        );
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
