//! Keyed hashes of login names for the logs: the same name always gets the same tag, so that
//! a password-spraying run shows in the logs as many tags from few addresses (or one tag from
//! many), while names typed by mistake (often someone's password) are never written down.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The name of the key in the `server_secrets` table.
pub const PSEUDONYM_KEY_NAME: &str = "log_pseudonym";

/// The key of the tags. `Debug` hides it.
#[derive(Clone)]
pub struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored log pseudonym key is malformed"))?;
        Ok(Self(bytes))
    }

    /// 64 bits of HMAC-SHA-256 of `name`, in hex: enough to tell names apart in a log, too
    /// few to confirm a guess of a name with much confidence across many names.
    pub fn tag(&self, name: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"authd login name v1\0");
        mac.update(name.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_per_key_and_name_and_hide_the_name() {
        let key = PseudonymKey([3; 32]);
        let tag = key.tag("alice");
        assert_eq!(tag.len(), 16);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key.tag("alice"), tag);
        assert_ne!(key.tag("alicf"), tag);
        assert_ne!(PseudonymKey([4; 32]).tag("alice"), tag);
        assert!(!tag.contains("alice"));
    }
}
