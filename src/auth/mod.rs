//! Credentials: password hashing, access tokens (JWT), refresh tokens, and the extractor that
//! turns a request's `Authorization` header into an authenticated user.

pub mod extract;
pub mod jwt;
pub mod password;
pub mod refresh;
pub mod workers;

pub use extract::AuthUser;
pub use jwt::{AccessClaims, TokenKeys};
pub use password::PasswordHasher;
pub use refresh::RefreshToken;
