//! What an e-mail of authd is for.

use std::time::Duration;

/// The two mails authd sends, each with a single-use token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailPurpose {
    /// A link to choose a new password.
    PasswordReset,
    /// A link that shows the address is the user's.
    Verification,
}

impl MailPurpose {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            MailPurpose::PasswordReset => "reset",
            MailPurpose::Verification => "verify",
        }
    }

    pub fn from_stored(name: &str) -> Option<Self> {
        match name {
            "reset" => Some(MailPurpose::PasswordReset),
            "verify" => Some(MailPurpose::Verification),
            _ => None,
        }
    }

    /// How long its token stays good.
    pub fn token_lifetime(self) -> Duration {
        match self {
            MailPurpose::PasswordReset => Duration::from_secs(30 * 60),
            MailPurpose::Verification => Duration::from_secs(24 * 3600),
        }
    }
}
