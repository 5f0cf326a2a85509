//! The tokens of password-reset and verification mails.
//!
//! A mail may wait in the outbox across restarts and SMTP outages, yet no token is stored in
//! clear: each token is derived with HMAC-SHA-256, under a server key, from the id of its
//! row, so the sender recomputes it from the row and the database keeps only its SHA-256
//! hash. To anyone without the key the 256 bits of a token are as unpredictable as random
//! ones; the key lives with the other server secrets (sealed under `AUTHD_MASTER_KEY` when
//! one is set).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::refresh::RefreshToken;

const KEY_BYTES: usize = 32;
/// The name of the derivation key in the `server_secrets` table.
pub const EMAIL_TOKEN_KEY_NAME: &str = "email_token_derivation";

/// An e-mail token in clear: exists while a mail is written or a token checked. Its form
/// (32 bytes in base64url) and hashing are those of a refresh token. `Debug` hides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailToken(RefreshToken);

/// The server key the tokens are derived under. Shared by every replica through the database.
#[derive(Clone)]
pub struct EmailTokenKey([u8; KEY_BYTES]);

impl EmailTokenKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bytes: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored e-mail token key is malformed"))?;
        Ok(Self(bytes))
    }

    /// The token of the row `id`.
    pub fn token(&self, id: Uuid) -> EmailToken {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"authd email token v1");
        mac.update(id.as_bytes());
        EmailToken(RefreshToken::from_bytes(mac.finalize().into_bytes().into()))
    }
}

impl std::fmt::Debug for EmailTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailTokenKey([redacted])")
    }
}

impl EmailToken {
    /// Parses a presented token; anything that is not 43 base64url characters is `None`,
    /// without a database lookup.
    pub fn parse(presented: &str) -> Option<Self> {
        RefreshToken::parse(presented).map(Self)
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> [u8; 32] {
        self.0.hash()
    }

    /// The text a mail carries.
    pub fn encode(&self) -> String {
        self.0.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_row_and_per_key_and_read_back() {
        let key = EmailTokenKey([1; 32]);
        let id = Uuid::new_v4();
        let token = key.token(id);
        assert_eq!(token, key.token(id), "the sender recomputes the same token");
        assert_ne!(token, key.token(Uuid::new_v4()));
        assert_ne!(token, EmailTokenKey([2; 32]).token(id));

        let text = token.encode();
        assert_eq!(text.len(), 43);
        assert_eq!(EmailToken::parse(&text), Some(token.clone()));
        assert_ne!(token.hash(), key.token(Uuid::new_v4()).hash());
        assert!(!format!("{token:?}{key:?}").contains(&text));
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_lookup() {
        assert_eq!(EmailToken::parse(""), None);
        assert_eq!(EmailToken::parse(&"A".repeat(42)), None);
        assert_eq!(EmailToken::parse(&"A".repeat(44)), None);
        assert_eq!(EmailToken::parse(&format!("{}!", "A".repeat(42))), None);
    }
}
