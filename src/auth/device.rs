//! Device cookies (OWASP, "Slow down online guessing attacks with device cookies"): a
//! successful login hands the browser a value that names the user and a device id, signed
//! with HMAC-SHA-256 under a server key. A later attempt carrying a valid one for the same
//! login name is counted on that device alone, so that an attacker failing on purpose cannot
//! lock the owner out; without one (or with another user's, or an altered one) the name's own
//! count applies.
//!
//! The value is `<device id, 32 hex digits>.<tag, 43 base64url characters>.<login name>`;
//! login names contain no `;`, `,` or white space, so it needs no cookie quoting.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

const KEY_BYTES: usize = 32;
const TAG_LEN: usize = 43;

/// The name of the signing key in the `server_secrets` table.
pub const DEVICE_KEY_NAME: &str = "device_cookie";

/// The server key that signs device cookies. `Debug` hides it.
#[derive(Clone)]
pub struct DeviceKey([u8; KEY_BYTES]);

/// A device cookie's content, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: Uuid,
    /// The normalized login name the cookie was issued to.
    pub name: String,
}

impl DeviceKey {
    pub fn generate() -> [u8; KEY_BYTES] {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let bytes: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored device cookie key is malformed"))?;
        Ok(Self(bytes))
    }

    fn mac(&self, id: &Uuid, name: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"authd device cookie v1\0");
        mac.update(id.as_bytes());
        mac.update(name.as_bytes());
        mac
    }

    /// The cookie value for `device`.
    pub fn issue(&self, device: &Device) -> String {
        let tag = self.mac(&device.id, &device.name).finalize().into_bytes();
        format!("{}.{}.{}", device.id.simple(), B64.encode(tag), device.name)
    }

    /// The device a cookie value names, if this key signed it.
    pub fn verify(&self, value: &str) -> Option<Device> {
        let mut parts = value.splitn(3, '.');
        let (id, tag, name) = (parts.next()?, parts.next()?, parts.next()?);
        if id.len() != 32 || tag.len() != TAG_LEN || name.is_empty() {
            return None;
        }
        let id = Uuid::try_parse(id).ok()?;
        let tag = B64.decode(tag).ok()?;
        // `verify_slice` compares in constant time.
        self.mac(&id, name).verify_slice(&tag).ok()?;
        Some(Device {
            id,
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str) -> Device {
        Device {
            id: Uuid::new_v4(),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_cookie_verifies_under_its_key_only_and_unaltered() {
        let key = DeviceKey([1; 32]);
        let owner = device("alice.smith");
        let value = key.issue(&owner);
        assert_eq!(key.verify(&value), Some(owner.clone()));
        assert_eq!(DeviceKey([2; 32]).verify(&value), None);

        // Another name, another id, a flipped tag character, or a cut: all refused.
        let renamed = value.replace("alice.smith", "mallory");
        assert_eq!(key.verify(&renamed), None);
        let other_id = format!("{}{}", Uuid::new_v4().simple(), &value[32..]);
        assert_eq!(key.verify(&other_id), None);
        let mut flipped = value.clone().into_bytes();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.verify(&String::from_utf8(flipped).unwrap()), None);
        for cut in [0, 10, 33, 76, value.len() - 1] {
            assert_eq!(key.verify(&value[..cut]), None, "{cut}");
        }
        assert_eq!(key.verify("garbage"), None);
    }
}
