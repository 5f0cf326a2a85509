//! Credentials: password hashing (argon2id), access tokens (JWT keys and claims) and refresh
//! tokens (random values, their hashes and their derivation). Nothing here knows HTTP or the
//! service that uses it.

pub mod jwt;
pub mod password;
pub mod refresh;
pub mod workers;

pub use jwt::{AccessClaims, TokenKeys};
pub use password::PasswordHasher;
pub use refresh::RefreshToken;
