//! The service's errors, in its own terms: `src/http/error.rs` maps each to a status and a
//! code.

use super::TokenRefusal;
use crate::{
    auth::workers::PoolError,
    domain::PasswordPolicyError,
    repo::{RepoError, UniqueField},
};

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
