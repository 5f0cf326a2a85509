//! API keys for scripts and services: `authd_` + 43 random base62 characters (256 bits) +
//! a 6-character checksum, the CRC-32 (IEEE) of everything before it written as 6 base62
//! digits (`0-9A-Za-z`, most significant first). The format is GitHub's: a secret scanner
//! can tell a real key from a typo without asking the server, and so can authd, which refuses
//! a key with a bad checksum without reading the database. Keys are stored as SHA-256 hashes
//! (256 random bits need no slow hash).

use rand::{distributions::Uniform, Rng};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "authd_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 43 base62 characters carry 43 × log2(62) ≈ 256.03 bits.
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// How much of a key is kept in clear to name it in lists: the prefix and 6 characters.
const SHOWN_LEN: usize = PREFIX.len() + 6;

/// A key in clear: exists only in the answer that creates it. `Debug` hides it.
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let letters = Uniform::from(0..ALPHABET.len());
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(PREFIX);
        key.extend((0..BODY_LEN).map(|_| ALPHABET[rng.sample(letters)] as char));
        let checksum = checksum(&key);
        key.push_str(&checksum);
        Self(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What lists show of the key: its first characters.
    pub fn shown(&self) -> &str {
        &self.0[..SHOWN_LEN]
    }

    pub fn hash(&self) -> [u8; 32] {
        hash(&self.0)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// Whether `presented` looks like an API key at all (as opposed to an access token).
pub fn looks_like_key(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

/// The hash to look `presented` up by, if it is a well-formed key with a matching checksum.
pub fn parse(presented: &str) -> Option<[u8; 32]> {
    if presented.len() != KEY_LEN
        || !presented.starts_with(PREFIX)
        || !presented[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    let (body, sum) = presented.split_at(KEY_LEN - CHECKSUM_LEN);
    (checksum(body) == sum).then(|| hash(presented))
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// CRC-32 (IEEE, as zlib's `crc32`) of `text`, as 6 base62 digits.
fn checksum(text: &str) -> String {
    let mut n = crc32fast::hash(text.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("base62 digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_format_and_a_checksum_that_catches_typos() {
        let key = ApiKey::generate();
        let text = key.expose();
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with("authd_"));
        assert_eq!(parse(text), Some(key.hash()));
        assert_eq!(key.shown(), &text[..12]);
        assert_ne!(ApiKey::generate().expose(), text);
        // Every single-character change in the body is caught by the checksum.
        for i in PREFIX.len()..KEY_LEN {
            let mut typo = text.as_bytes().to_vec();
            typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(parse(std::str::from_utf8(&typo).unwrap()), None, "at {i}");
        }
        assert_eq!(parse(&text[..KEY_LEN - 1]), None);
        assert_eq!(parse("authd_"), None);
        assert_eq!(format!("{key:?}"), "ApiKey([redacted])");
    }

    #[test]
    fn the_checksum_is_zlibs_crc32_in_base62() {
        // crc32("123456789") = 0xCBF43926 = 3421780262 = base62 "3jZRME".
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(checksum("123456789"), "3jZRME");
        // 0 is six zeros.
        assert_eq!(checksum(""), "000000");
    }
}
