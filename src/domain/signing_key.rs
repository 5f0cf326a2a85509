use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An access-token signing key as stored. The private key is PKCS#8 DER, sealed under the
/// master key when `sealed` (see `crate::auth::sealing`); it never leaves the process, and
/// `Debug` leaves it out.
#[derive(Clone)]
pub struct StoredSigningKey {
    /// The key's id, named in each token's `kid` header.
    pub kid: String,
    /// The JWS algorithm (`EdDSA`).
    pub algorithm: String,
    pub private_key: Vec<u8>,
    /// Whether `private_key` is sealed under the master key.
    pub sealed: bool,
    pub public_key: Vec<u8>,
    /// Whether this key signs new tokens; the others only verify.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    /// When a rotation made another key the active one.
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .field("sealed", &self.sealed)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl StoredSigningKey {
    /// The associated data a sealed private key is bound to: its row.
    pub fn row(&self) -> String {
        format!("signing_keys:{}", self.kid)
    }

    /// Whether tokens it signed may still be presented at `now`: it is the active key, or it
    /// was retired less than `token_lifetime` ago (the last token it signed expires by then).
    pub fn verifies_at(&self, now: DateTime<Utc>, token_lifetime: chrono::TimeDelta) -> bool {
        self.active || self.retired_at.is_some_and(|at| at + token_lifetime > now)
    }
}

/// A server secret as stored (a random key that every replica shares), sealed under the
/// master key when `sealed`. `Debug` leaves the value out.
#[derive(Clone)]
pub struct StoredSecret {
    pub name: String,
    pub secret: Vec<u8>,
    pub sealed: bool,
}

impl StoredSecret {
    /// The associated data a sealed secret is bound to: its row.
    pub fn row(&self) -> String {
        format!("server_secrets:{}", self.name)
    }
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

/// A user's TOTP factor as stored: its secret (sealed under the master key when `sealed`),
/// whether its enrolment was confirmed, and the last time step a code was accepted for.
/// `Debug` leaves the secret out.
#[derive(Clone)]
pub struct StoredTotp {
    pub user_id: Uuid,
    pub secret: Vec<u8>,
    pub sealed: bool,
    pub confirmed: bool,
    pub last_step: i64,
}

impl StoredTotp {
    /// The associated data a sealed secret is bound to: its row.
    pub fn row(&self) -> String {
        totp_row(self.user_id)
    }
}

/// The row of `user_id`'s TOTP secret, as associated data.
pub fn totp_row(user_id: Uuid) -> String {
    format!("totp_factors:{user_id}")
}

impl std::fmt::Debug for StoredTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTotp")
            .field("user_id", &self.user_id)
            .field("sealed", &self.sealed)
            .field("confirmed", &self.confirmed)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}
