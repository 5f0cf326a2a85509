//! CSRF tokens of cookie-mode sessions: HMAC-SHA-256 of the session id under a server key.
//! One token serves the whole session (its refresh cookie rotates, the token does not), and
//! checking it needs no storage: the presented refresh cookie names the session.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The name of the key in the `server_secrets` table.
pub const CSRF_KEY_NAME: &str = "csrf_token";

/// The key of the tokens. `Debug` hides it.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored CSRF key is malformed"))?;
        Ok(Self(bytes))
    }

    fn mac(&self, session_id: Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"authd csrf v1\0");
        mac.update(session_id.as_bytes());
        mac
    }

    /// The CSRF token of a session.
    pub fn token(&self, session_id: Uuid) -> String {
        B64.encode(self.mac(session_id).finalize().into_bytes())
    }

    /// Whether `presented` is the session's token (compared in constant time).
    pub fn verify(&self, session_id: Uuid, presented: &str) -> bool {
        B64.decode(presented)
            .is_ok_and(|tag| self.mac(session_id).verify_slice(&tag).is_ok())
    }
}

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_for_its_session_only() {
        let key = CsrfKey([5; 32]);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token = key.token(a);
        assert!(key.verify(a, &token));
        assert!(!key.verify(b, &token));
        assert!(!CsrfKey([6; 32]).verify(a, &token));
        assert!(!key.verify(a, ""));
        assert!(!key.verify(a, "not base64!"));
        assert!(!key.verify(a, &token[..20]));
    }
}
