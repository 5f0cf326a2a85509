//! Credentials: password hashing (argon2id), access tokens (JWT keys and claims), refresh
//! tokens (random values, their hashes and their derivation), TOTP codes and recovery codes,
//! device cookies, the sealing of stored secrets under the master key, and the keyed hashes
//! that stand for login names in logs. Nothing here knows HTTP or the service that uses it.

pub mod api_key;
pub mod csrf;
pub mod device;
pub mod email_token;
pub mod jwt;
pub mod password;
pub mod pseudonym;
pub mod refresh;
pub mod sealing;
pub mod totp;
pub mod workers;

pub use jwt::{AccessClaims, TokenKeys};
pub use password::PasswordHasher;
pub use refresh::RefreshToken;
