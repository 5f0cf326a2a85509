//! Opaque refresh tokens: 256 random bits, stored only as a SHA-256 hash.
//!
//! Each rotation derives the child token from its parent with HMAC-SHA-256 under a server
//! key. The child is as unpredictable as a random value to anyone without the key, and the
//! server can recompute it from the parent alone: that is how a refresh repeated within the
//! grace window gets the session's current token back although no token is stored in clear.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

const TOKEN_BYTES: usize = 32;
/// Length of the base64url (unpadded) encoding of 32 bytes.
const ENCODED_LEN: usize = 43;
/// The name of the derivation key in the `server_secrets` table.
pub const DERIVATION_KEY_NAME: &str = "refresh_token_derivation";

/// A refresh token in clear. Exists only while a request is handled; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken([u8; TOKEN_BYTES]);

/// The server key that derives child tokens. Shared by every replica through the database.
#[derive(Clone)]
pub struct DerivationKey([u8; TOKEN_BYTES]);

impl RefreshToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A token of these bytes (a value derived elsewhere under a server key).
    pub(super) fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parses a presented token; anything that is not 43 base64url characters is `None`,
    /// without a database lookup.
    pub fn parse(presented: &str) -> Option<Self> {
        if presented.len() != ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        match B64.decode_slice(presented, &mut bytes) {
            Ok(TOKEN_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// The token this one rotates into.
    pub fn child(&self, key: &DerivationKey) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(b"authd refresh token v1");
        mac.update(&self.0);
        Self(mac.finalize().into_bytes().into())
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }

    /// The string handed to the client.
    pub fn encode(&self) -> String {
        B64.encode(self.0)
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

impl DerivationKey {
    pub fn generate() -> [u8; TOKEN_BYTES] {
        RefreshToken::generate().0
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bytes: [u8; TOKEN_BYTES] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored refresh derivation key is malformed"))?;
        Ok(Self(bytes))
    }
}

impl std::fmt::Debug for DerivationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivationKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DerivationKey {
        DerivationKey([byte; 32])
    }

    #[test]
    fn encodes_256_bits_and_parses_back() {
        let t = RefreshToken::generate();
        let s = t.encode();
        assert_eq!(s.len(), 43);
        assert_eq!(RefreshToken::parse(&s), Some(t));
    }

    #[test]
    fn generated_tokens_differ() {
        assert_ne!(RefreshToken::generate(), RefreshToken::generate());
    }

    #[test]
    fn parse_refuses_anything_else() {
        let good = RefreshToken::generate().encode();
        for bad in [
            "",
            "short",
            &format!("{good}A"),
            &good.replace(&good[..1], "+"),
            &"=".repeat(43),
            "é".repeat(22).as_str(),
        ] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn children_are_deterministic_per_key_and_distinct_from_parents() {
        let parent = RefreshToken::generate();
        assert_eq!(parent.child(&key(1)), parent.child(&key(1)));
        assert_ne!(parent.child(&key(1)), parent.child(&key(2)));
        assert_ne!(parent.child(&key(1)), parent);
        assert_ne!(parent.child(&key(1)).child(&key(1)), parent.child(&key(1)));
    }

    #[test]
    fn the_stored_hash_is_not_the_token() {
        let t = RefreshToken::generate();
        assert_ne!(t.hash(), t.0);
        assert_eq!(t.hash(), t.clone().hash());
    }

    #[test]
    fn debug_hides_the_token() {
        let t = RefreshToken::generate();
        assert!(!format!("{t:?}").contains(&t.encode()));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(raw in "\\PC{0,60}") {
            if let Some(t) = RefreshToken::parse(&raw) {
                proptest::prop_assert_eq!(t.encode(), raw);
            }
        }
    }
}
