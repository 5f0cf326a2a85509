use chrono::{DateTime, Utc};

/// An access-token signing key as stored. The private key is PKCS#8 DER; it never leaves the
/// process, and `Debug` leaves it out.
#[derive(Clone)]
pub struct StoredSigningKey {
    /// The key's id, named in each token's `kid` header.
    pub kid: String,
    /// The JWS algorithm (`EdDSA`).
    pub algorithm: String,
    pub private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    /// Whether this key signs new tokens; the others only verify.
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("active", &self.active)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}
