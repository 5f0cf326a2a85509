//! Secrets at rest: the signing keys and server secrets that authd keeps in its database are
//! sealed under the operator's master key (`AUTHD_MASTER_KEY`) with XChaCha20-Poly1305, an
//! AEAD whose 192-bit nonces can be drawn at random. Each sealed value is bound to its row
//! (the row's key is the associated data), so that sealed values cannot be swapped between
//! rows unnoticed.

use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand::RngCore;

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The master key. `Debug` hides it.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

/// The master key does not open a sealed value: another key sealed it, or it was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the master key does not open this sealed value")]
pub struct WrongKey;

/// Why a text is not a master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 32 bytes in base64 (for example from `openssl rand -base64 32`)")]
pub struct BadMasterKey;

impl MasterKey {
    /// Parses the base64 form of 32 bytes (standard alphabet, padded or not; surrounding
    /// white space, as a key file ends with a newline, is ignored).
    pub fn parse(text: &str) -> Result<Self, BadMasterKey> {
        let text = text.trim().trim_end_matches('=');
        let mut bytes = [0u8; KEY_BYTES + 2];
        let n = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode_slice(text, &mut bytes)
            .map_err(|_| BadMasterKey)?;
        if n != KEY_BYTES {
            return Err(BadMasterKey);
        }
        let key = Self(XChaCha20Poly1305::new(bytes[..KEY_BYTES].into()));
        bytes.fill(0);
        Ok(key)
    }

    /// A new random key, in the form [`MasterKey::parse`] reads.
    pub fn generate_text() -> String {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let text = STANDARD.encode(bytes);
        bytes.fill(0);
        text
    }

    /// `secret` sealed for the row `row`: a random nonce followed by the ciphertext and tag.
    pub fn seal(&self, row: &str, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: row.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        [&nonce[..], &sealed].concat()
    }

    /// Opens what [`MasterKey::seal`] sealed for the same row.
    pub fn open(&self, row: &str, sealed: &[u8]) -> Result<Vec<u8>, WrongKey> {
        let (Some(nonce), Some(ciphertext)) =
            (sealed.get(..NONCE_BYTES), sealed.get(NONCE_BYTES..))
        else {
            return Err(WrongKey);
        };
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| WrongKey)?;
        self.0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: row.as_bytes(),
                },
            )
            .map_err(|_| WrongKey)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::parse(&MasterKey::generate_text()).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let (a, b) = (key(), key());
        let sealed = a.seal("signing_key:k1", b"private key bytes");
        assert!(!sealed
            .windows(b"private key bytes".len())
            .any(|w| w == b"private key bytes"));
        assert_eq!(
            a.open("signing_key:k1", &sealed).unwrap(),
            b"private key bytes"
        );
        assert_eq!(b.open("signing_key:k1", &sealed), Err(WrongKey));
        assert_eq!(a.open("signing_key:k2", &sealed), Err(WrongKey));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(a.open("signing_key:k1", &altered), Err(WrongKey));
        assert_eq!(a.open("signing_key:k1", &sealed[..10]), Err(WrongKey));
        assert_ne!(
            a.seal("signing_key:k1", b"x"),
            a.seal("signing_key:k1", b"x"),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn only_32_bytes_of_base64_make_a_key() {
        let text = MasterKey::generate_text();
        assert!(MasterKey::parse(&format!("{text}\n")).is_ok());
        assert!(MasterKey::parse(text.trim_end_matches('=')).is_ok());
        assert_eq!(
            MasterKey::parse(&STANDARD.encode([1u8; 31])).err(),
            Some(BadMasterKey)
        );
        assert_eq!(
            MasterKey::parse(&STANDARD.encode([1u8; 33])).err(),
            Some(BadMasterKey)
        );
        assert_eq!(MasterKey::parse("not base64!").err(), Some(BadMasterKey));
        assert_eq!(format!("{:?}", key()), "MasterKey([redacted])");
    }
}
