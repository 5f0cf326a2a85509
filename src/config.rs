//! Settings from the environment (and `.env`), parsed and checked once at start.
//!
//! Each setting is one typed field of [`Config`]: its flag, environment variable, default and
//! parser are declared on it, and clap prints `--help` from them. A bad value is reported as
//! one line naming the setting's variable ([`describe`]), and never echoes a secret.

use std::{net::SocketAddr, num::NonZeroU32, str::FromStr, time::Duration};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::sealing::MasterKey;

/// Minimum length of `AUTHD_JWT_SECRET`, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Longest lifetime or timeout accepted, so that adding one to "now" never overflows.
const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Every setting: `authd --help` lists them, with their variables and defaults.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Settings (flags, environment variables or a .env file)")]
pub struct Config {
    /// sqlite://<file> (created if missing) or postgres://user:password@host/database
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = "sqlite://authd.db",
          value_parser = DatabaseUrl::parse, hide_env_values = true, global = true)]
    pub database: DatabaseUrl,
    /// Listen address (0.0.0.0:8000 in a container)
    #[arg(long, env = "AUTHD_ADDR", default_value = "127.0.0.1:8000",
          value_parser = parse_addr, hide_env_values = true, global = true)]
    pub addr: SocketAddr,
    /// `iss` of access tokens
    #[arg(
        long,
        env = "AUTHD_ISSUER",
        default_value = "authd",
        hide_env_values = true,
        global = true
    )]
    pub issuer: String,
    /// `aud` of access tokens
    #[arg(
        long,
        env = "AUTHD_AUDIENCE",
        default_value = "authd",
        hide_env_values = true,
        global = true
    )]
    pub audience: String,
    /// Base URL clients reach authd at (behind a proxy, its public address); default
    /// http://<AUTHD_ADDR>
    #[arg(long, env = "AUTHD_PUBLIC_URL", value_parser = parse_public_url,
          hide_env_values = true, global = true)]
    pub public_url: Option<String>,
    /// Access token lifetime, in seconds
    #[arg(long = "access-ttl-secs", env = "AUTHD_ACCESS_TTL_SECS", default_value = "1800",
          value_parser = at_least_secs::<1>, hide_env_values = true, global = true)]
    pub access_ttl: Duration,
    /// Refresh token idle lifetime, in seconds (14 days)
    #[arg(long = "refresh-ttl-secs", env = "AUTHD_REFRESH_TTL_SECS", default_value = "1209600",
          value_parser = at_least_secs::<1>, hide_env_values = true, global = true)]
    pub refresh_ttl: Duration,
    /// Absolute session lifetime, in seconds (90 days)
    #[arg(long = "session-max-secs", env = "AUTHD_SESSION_MAX_SECS", default_value = "7776000",
          value_parser = at_least_secs::<1>, hide_env_values = true, global = true)]
    pub session_max: Duration,
    /// Concurrent-refresh grace window, in seconds, at most 300; 0 turns it off
    #[arg(long = "refresh-grace-secs", env = "AUTHD_REFRESH_GRACE_SECS", default_value = "10",
          value_parser = parse_grace, hide_env_values = true, global = true)]
    pub refresh_grace: Duration,
    /// HS256 with this secret (at least 32 bytes); unset: Ed25519 keys kept in the database
    #[arg(long, env = "AUTHD_JWT_SECRET", value_parser = parse_jwt_secret,
          hide_env_values = true, global = true)]
    pub jwt_secret: Option<SecretString>,
    /// 32 bytes in base64 that seal the signing keys and server secrets kept in the database;
    /// unset: they are stored in clear (a warning at start)
    #[arg(long, env = "AUTHD_MASTER_KEY", value_parser = parse_master_key,
          hide_env_values = true, global = true)]
    pub master_key: Option<MasterKey>,
    /// Days an account's events are kept (GET /users/me/events), from 1 to 36500
    #[arg(long, env = "AUTHD_EVENT_RETENTION_DAYS", default_value = "90",
          value_parser = clap::value_parser!(u32).range(1..=36_500), hide_env_values = true,
          global = true)]
    pub event_retention_days: u32,
    /// Attempts per client IP per minute at the credential endpoints; 0 turns the limit off
    #[arg(
        long,
        env = "AUTHD_LOGIN_RATE_PER_MIN",
        default_value = "20",
        hide_env_values = true,
        global = true
    )]
    pub login_rate_per_min: u32,
    /// CIDRs or addresses of reverse proxies whose X-Forwarded-For is believed, comma-separated
    #[arg(long, env = "AUTHD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy,
          hide_env_values = true, global = true)]
    pub trusted_proxies: Vec<IpNet>,
    /// Browser origins allowed by CORS, comma-separated; empty: CORS off
    #[arg(long, env = "AUTHD_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin,
          hide_env_values = true, global = true)]
    pub cors_origins: Vec<String>,
    /// SMTP server for password-reset and verification mail: smtp://host[:port] (plain),
    /// smtp://host?tls=starttls, smtps://host (TLS), with user:password@ if it asks; unset:
    /// e-mail off
    #[arg(long, env = "AUTHD_SMTP_URL", value_parser = parse_smtp_url, hide_env_values = true,
          global = true)]
    pub smtp_url: Option<SecretString>,
    /// The From of authd's mails
    #[arg(long, env = "AUTHD_MAIL_FROM", default_value = "authd@localhost",
          value_parser = parse_mail_from, hide_env_values = true, global = true)]
    pub mail_from: String,
    /// true: a correct password of an account whose address is not verified gets 403
    #[arg(long, env = "AUTHD_REQUIRE_VERIFIED_EMAIL", default_value = "false",
          action = clap::ArgAction::Set, value_parser = parse_bool, hide_env_values = true,
          global = true)]
    pub require_verified_email: bool,
    /// A request not answered within this many seconds gets 503
    #[arg(long = "request-timeout-secs", env = "AUTHD_REQUEST_TIMEOUT_SECS", default_value = "10",
          value_parser = at_least_secs::<1>, hide_env_values = true, global = true)]
    pub request_timeout: Duration,
    /// A connection without a complete request head within this many seconds is closed
    #[arg(long = "header-timeout-secs", env = "AUTHD_HEADER_TIMEOUT_SECS", default_value = "10",
          value_parser = at_least_secs::<1>, hide_env_values = true, global = true)]
    pub header_timeout: Duration,
    /// Log lines as text or json
    #[arg(long, env = "AUTHD_LOG_FORMAT", default_value = "text", value_parser = parse_log_format,
          hide_env_values = true, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which database a `DATABASE_URL` points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A checked `DATABASE_URL`. It may carry a password, so it is kept as a secret.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    url: SecretString,
    pub backend: Backend,
}

impl DatabaseUrl {
    /// Only the scheme is ever shown in errors: the rest of the URL may hold a password.
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let backend = if url.starts_with("sqlite:") {
            match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
                Err(_) => return Err("is not a valid sqlite:// URL"),
                // Its data would vanish on restart, and the direct readers need a file.
                Ok(options)
                    if url.contains(":memory:")
                        || url.contains("mode=memory")
                        || options.get_filename().as_os_str().is_empty() =>
                {
                    return Err(
                        "names an in-memory SQLite database; authd needs a file (sqlite://authd.db)",
                    );
                }
                Ok(_) => Backend::Sqlite,
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|_| "is not a valid postgres:// URL")?;
            Backend::Postgres
        } else {
            return Err("must start with sqlite:// or postgres://");
        };
        Ok(Self {
            url: SecretString::from(url.to_owned()),
            backend,
        })
    }

    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }
}

impl Config {
    /// The per-IP rate at the credential endpoints; `None` when turned off.
    pub fn login_rate(&self) -> Option<NonZeroU32> {
        NonZeroU32::new(self.login_rate_per_min)
    }

    /// The settings given by `lookup` (variable name → value), the defaults for the rest,
    /// through the same parsers as at start; nothing is read from the process environment.
    /// For tests and tools that set up a server in-process.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        use clap::{CommandFactory as _, FromArgMatches as _};
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let command = Only::command().no_binary_name(true);
        let mut args = Vec::new();
        for arg in command.get_arguments() {
            let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = name.to_str().and_then(&lookup) {
                if !value.trim().is_empty() {
                    args.push(format!("--{long}={value}"));
                }
            }
        }
        // Parsed without the process environment; errors named through the variables.
        let matches = command
            .clone()
            .mut_args(|arg| arg.env(None::<&str>))
            .try_get_matches_from(args)
            .map_err(|e| describe(&e, &command))?;
        Only::from_arg_matches(&matches)
            .map(|only| only.config)
            .map_err(|e| describe(&e, &command))
    }
}

/// Drops the settings' variables that are set but empty (`AUTHD_X=` in a `.env` file), so
/// that an empty value counts as unset and takes the default. Call before parsing, while the
/// process has one thread.
pub fn unset_empty_variables() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| {
            let name = name.to_string_lossy();
            (name.starts_with("AUTHD_") || name == "DATABASE_URL")
                && value.to_string_lossy().trim().is_empty()
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        std::env::remove_var(name);
    }
}

/// One line for a command line or settings error: a bad value names its variable and says
/// what is wrong with it (never the value of a secret); anything else is clap's own message.
pub fn describe(error: &clap::Error, command: &clap::Command) -> String {
    let bad_value = matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    );
    let invalid = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.as_str()),
        _ => None,
    };
    // An argument shows as the error does only once its command is built.
    let mut command = command.clone();
    command.build();
    let setting = invalid.and_then(|shown| {
        command
            .get_arguments()
            .find(|arg| arg.to_string() == shown)
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
    });
    match (bad_value, setting) {
        (true, Some(setting)) => {
            let reason = std::error::Error::source(error)
                .map(ToString::to_string)
                .unwrap_or_else(|| "is not one of the accepted values".to_owned());
            format!("invalid setting {setting}: {reason}")
        }
        _ => error
            .render()
            .to_string()
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_owned(),
    }
}

/// Loads `.env` from the working directory when there is one. A missing file is fine; a
/// malformed one is an error (naming the file, not its contents).
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(_, line)) => {
            Err(format!("invalid setting .env: cannot parse line {line}"))
        }
        Err(_) => Err("invalid setting .env: cannot be read".to_owned()),
    }
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:8000"))
}

/// An http(s) URL with a host, and no query or fragment; kept without a trailing slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
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
        Err(format!(
            "{text:?} is not a URL like https://auth.example.com"
        ))
    }
}

/// Whole seconds from `MIN` to [`MAX_SECS`].
fn at_least_secs<const MIN: u64>(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (MIN..=MAX_SECS).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "{text:?} is not a whole number of seconds from {MIN} to {MAX_SECS}"
        )),
    }
}

fn parse_grace(text: &str) -> Result<Duration, String> {
    let grace = at_least_secs::<0>(text)?;
    if grace > Duration::from_secs(300) {
        return Err(
            "must be at most 300 seconds; a long grace window weakens reuse detection".into(),
        );
    }
    Ok(grace)
}

/// Taken raw (not trimmed): spaces are bytes of the key like any other. Never echoed.
fn parse_jwt_secret(secret: &str) -> Result<SecretString, String> {
    if secret.len() < MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_JWT_SECRET_BYTES} bytes (got {}); generate one with `openssl rand -base64 48`",
            secret.len()
        ));
    }
    Ok(SecretString::from(secret.to_owned()))
}

fn parse_master_key(text: &str) -> Result<MasterKey, String> {
    MasterKey::parse(text).map_err(|e| e.to_string())
}

/// A bare address means just that host.
fn parse_proxy(item: &str) -> Result<IpNet, String> {
    let item = item.trim();
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{item:?} is not an IP address or CIDR like 10.0.0.0/8"))
}

fn parse_origin(item: &str) -> Result<String, String> {
    let origin = item.trim().trim_end_matches('/');
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let valid = host.is_some_and(|h| !h.is_empty() && !h.contains('/'))
        && origin.bytes().all(|b| b.is_ascii_graphic());
    valid
        .then(|| origin.to_owned())
        .ok_or_else(|| format!("{item:?} is not an origin like https://app.example.com"))
}

fn parse_smtp_url(text: &str) -> Result<SecretString, String> {
    let url = SecretString::from(text.trim().to_owned());
    crate::mail::check_smtp_url(&url)?;
    Ok(url)
}

fn parse_mail_from(text: &str) -> Result<String, String> {
    let from = text.trim();
    crate::mail::check_mail_from(from)?;
    Ok(from.to_owned())
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not one of: text, json")),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not one of: true, false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashMap, net::IpAddr};

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    /// The one line a bad `value` of `name` gives: it names the variable.
    fn refused(name: &str, value: &str) -> String {
        let err = config(&[(name, value)]).unwrap_err();
        assert!(
            err.starts_with(&format!("invalid setting {name}: ")),
            "{name}={value}: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database.expose(), "sqlite://authd.db");
        assert_eq!(c.database.backend, Backend::Sqlite);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8000");
        assert_eq!((c.issuer.as_str(), c.audience.as_str()), ("authd", "authd"));
        assert_eq!(c.access_ttl, Duration::from_secs(1800));
        assert_eq!(c.refresh_ttl, Duration::from_secs(1_209_600));
        assert_eq!(c.session_max, Duration::from_secs(7_776_000));
        assert_eq!(c.refresh_grace, Duration::from_secs(10));
        assert_eq!(c.event_retention_days, 90);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.jwt_secret.is_none() && c.master_key.is_none());
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
        let err = refused("AUTHD_SMTP_URL", "ftp://mailer:hunter2@mail.example.com");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn postgres_urls_select_postgres() {
        let c = config(&[("DATABASE_URL", "postgres://postgres@127.0.0.1/test")]).unwrap();
        assert_eq!(c.database.backend, Backend::Postgres);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("AUTHD_ADDR", "localhost"),
            ("AUTHD_ACCESS_TTL_SECS", "-5"),
            ("AUTHD_ACCESS_TTL_SECS", "0"),
            ("AUTHD_REFRESH_GRACE_SECS", "ten"),
            ("AUTHD_REFRESH_GRACE_SECS", "301"),
            ("AUTHD_EVENT_RETENTION_DAYS", "0"),
            ("AUTHD_LOG_FORMAT", "xml"),
            ("AUTHD_PUBLIC_URL", "auth.example.com"),
            ("AUTHD_PUBLIC_URL", "https://auth.example.com/?x=1"),
            ("AUTHD_SMTP_URL", "mail.example.com:25"),
            ("AUTHD_MAIL_FROM", "not an address"),
            ("AUTHD_REQUIRE_VERIFIED_EMAIL", "yes please"),
            ("AUTHD_MASTER_KEY", "c2hvcnQ="),
        ] {
            refused(name, value);
        }
    }

    #[test]
    fn rate_limit_proxies_and_origins() {
        let c = config(&[]).unwrap();
        assert_eq!(c.login_rate().map(|n| n.get()), Some(20));
        assert!(c.trusted_proxies.is_empty() && c.cors_origins.is_empty());
        let c = config(&[
            ("AUTHD_LOGIN_RATE_PER_MIN", "0"),
            ("AUTHD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"),
            (
                "AUTHD_CORS_ORIGINS",
                "https://app.example.com,http://localhost:3000/",
            ),
        ])
        .unwrap();
        assert_eq!(c.login_rate(), None);
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
            refused(name, bad);
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
            refused("DATABASE_URL", url);
        }
    }

    #[test]
    fn grace_zero_is_allowed() {
        let c = config(&[("AUTHD_REFRESH_GRACE_SECS", "0")]).unwrap();
        assert_eq!(c.refresh_grace, Duration::ZERO);
    }

    #[test]
    fn short_secret_is_refused_without_echoing_it() {
        let err = refused("AUTHD_JWT_SECRET", "hunter2-hunter2");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let c = config(&[
            ("AUTHD_JWT_SECRET", secret),
            ("DATABASE_URL", "postgres://u:pw-in-url@localhost/db"),
            (
                "AUTHD_MASTER_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(secret));
        assert!(!shown.contains("pw-in-url"));
        assert!(!shown.contains("AAAAAAAA"));
    }
}
