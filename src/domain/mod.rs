//! Domain types that parse rather than validate: once you hold one, it is valid.

mod email;
mod event;
mod full_name;
mod listing;
mod mail;
mod password;
mod signing_key;
mod user;
mod username;

pub use email::Email;
pub use event::{Event, EventKind, NewEvent};
pub use full_name::FullName;
pub use listing::{ApiKeyInfo, SessionInfo};
pub use mail::MailPurpose;
pub use password::{normalize as normalize_password, Password, PasswordPolicyError};
pub use signing_key::{totp_row, StoredSecret, StoredSigningKey, StoredTotp};
pub use user::{rfc3339, User, UserId};
pub use username::Username;
