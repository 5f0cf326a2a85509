//! The account's audit trail: what happened to an account, when, and from where.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    LoginSucceeded,
    LoginFailed,
    /// The password was right; the login waits for its second factor.
    MfaChallenged,
    MfaEnabled,
    MfaDisabled,
    RefreshReuseDetected,
    Logout,
    PasswordChanged,
    ApiKeyCreated,
    ApiKeyRevoked,
    SessionRevoked,
    /// A reset mail was asked for the account's address (sent or not, under the hourly cap).
    PasswordResetRequested,
    PasswordReset,
    EmailVerified,
}

impl EventKind {
    /// The stable name clients see (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::MfaChallenged => "mfa_challenged",
            EventKind::MfaEnabled => "mfa_enabled",
            EventKind::MfaDisabled => "mfa_disabled",
            EventKind::RefreshReuseDetected => "refresh_reuse_detected",
            EventKind::Logout => "logout",
            EventKind::PasswordChanged => "password_changed",
            EventKind::ApiKeyCreated => "api_key_created",
            EventKind::ApiKeyRevoked => "api_key_revoked",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::PasswordResetRequested => "password_reset_requested",
            EventKind::PasswordReset => "password_reset",
            EventKind::EmailVerified => "email_verified",
        }
    }
}

/// An event to record, with the client that caused it (none for the server's own doing).
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub user_id: Uuid,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A recorded event, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}
