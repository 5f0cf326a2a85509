//! The TOTP second factor (RFC 6238 with HMAC-SHA-1, 6 digits and 30-second steps, what
//! every authenticator app reads), its recovery codes, and the `mfa_token` that carries a
//! login from its correct password to its second factor.
//!
//! Codes are computed and compared by `totp-rs`; which time step a code matched is returned,
//! so that the caller can accept each step at most once (RFC 6238 §5.2). Recovery codes carry
//! 79 random bits: a SHA-256 hash is enough to store them, as for refresh tokens.

use rand::{distributions::Uniform, Rng, RngCore};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Totp};

use super::RefreshToken;

/// RFC 4226 §4 recommends 160 bits.
const SECRET_BYTES: usize = 20;
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
/// A code of the step before or after now is accepted too (clock drift, typing time).
const SKEW_STEPS: u16 = 1;
/// How many recovery codes an enrolment hands out.
pub const RECOVERY_CODES: usize = 10;
/// Recovery codes are 16 characters of this alphabet (no o, 0, 1, i or l, which are easily
/// misread), shown in groups of four: 16 × log2(31) ≈ 79 random bits.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_LEN: usize = 16;

/// A TOTP secret in clear. `Debug` hides it.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

/// What an authenticator app needs to be set up: the secret in base32, the `otpauth://` URI
/// holding it, and that URI as a QR code (SVG).
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// A stored secret (opened, if it was sealed).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, issuer: Option<&str>, account: &str) -> anyhow::Result<Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECS)
            .with_secret(self.0.clone())
            .with_issuer(issuer)
            .with_account_name(account)
            .build()
            .map_err(|e| anyhow::anyhow!("TOTP parameters refused: {e}"))
    }

    /// The set-up of this secret for `account` (a username) at `issuer` (the service's
    /// name as authenticator apps list it; see [`issuer_label`]).
    pub fn enrolment(&self, issuer: &str, account: &str) -> anyhow::Result<Enrolment> {
        let totp = self.totp(Some(issuer), account)?;
        let uri = totp
            .to_url()
            .map_err(|e| anyhow::anyhow!("otpauth URI refused: {e}"))?;
        let qr_svg = qrcode::QrCode::new(uri.as_bytes())?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        Ok(Enrolment {
            secret: totp.secret().to_base32(),
            uri,
            qr_svg,
        })
    }

    /// The time step that `code` is right for, at `unix_secs` give or take one step; `None`
    /// for a wrong or malformed code. Accepting each step once is the caller's part.
    pub fn matching_step(&self, code: &str, unix_secs: i64) -> Option<i64> {
        let code = totp_code(code)?;
        let totp = self.totp(None, "").ok()?;
        let step = totp.check(&code, u64::try_from(unix_secs).ok()?)?;
        i64::try_from(step).ok()
    }

    /// The code of `unix_secs` (what an authenticator app shows then); for tests and tools.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.totp(None, "")
            .map(|totp| totp.generate(unix_secs).to_string())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// `code` as 6 digits (spaces, as apps show "123 456", dropped), if it is a TOTP code.
pub fn totp_code(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| *c != ' ').collect();
    (digits.len() == usize::from(DIGITS) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// The issuer an authenticator app lists the account under: `AUTHD_ISSUER` without a URL's
/// scheme, port and path (an otpauth issuer may not hold a colon).
pub fn issuer_label(issuer: &str) -> String {
    let host = issuer
        .split_once("://")
        .map_or(issuer, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    if host.is_empty() {
        "authd".to_owned()
    } else {
        host.to_owned()
    }
}

/// A recovery code in clear: shown once, at enrolment. `Debug` hides it.
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// [`RECOVERY_CODES`] new codes.
    pub fn generate_set() -> Vec<Self> {
        let mut rng = rand::rngs::OsRng;
        let letters = Uniform::from(0..RECOVERY_ALPHABET.len());
        (0..RECOVERY_CODES)
            .map(|_| {
                let raw: String = (0..RECOVERY_LEN)
                    .map(|_| RECOVERY_ALPHABET[rng.sample(letters)] as char)
                    .collect();
                let groups: Vec<&str> = (0..RECOVERY_LEN)
                    .step_by(4)
                    .map(|i| &raw[i..i + 4])
                    .collect();
                Self(groups.join("-"))
            })
            .collect()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> [u8; 32] {
        recovery_code_hash(&self.0).expect("a generated recovery code is well formed")
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

/// The stored hash of a presented recovery code, read without regard to case, dashes and
/// spaces; `None` if it cannot be one.
pub fn recovery_code_hash(presented: &str) -> Option<[u8; 32]> {
    let normalized: String = presented
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let well_formed = normalized.len() == RECOVERY_LEN
        && normalized.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
    well_formed.then(|| Sha256::digest(normalized.as_bytes()).into())
}

/// The single-use token of a login waiting for its second factor: opaque, 256 random bits,
/// stored as a hash. `Debug` hides it.
#[derive(Debug)]
pub struct MfaToken(RefreshToken);

impl MfaToken {
    pub fn generate() -> Self {
        Self(RefreshToken::generate())
    }

    pub fn parse(presented: &str) -> Option<Self> {
        RefreshToken::parse(presented).map(Self)
    }

    pub fn hash(&self) -> [u8; 32] {
        self.0.hash()
    }

    pub fn encode(&self) -> String {
        self.0.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, last six digits.
    #[test]
    fn codes_match_the_rfc_test_vectors_and_name_their_step() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec());
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time), code);
            assert_eq!(
                secret.matching_step(code, time as i64),
                Some(time as i64 / 30)
            );
        }
        // One step either side is accepted, and reported as that step; two are not.
        let code = secret.code_at(1_111_111_109);
        assert_eq!(
            secret.matching_step(&code, 1_111_111_109 + 30),
            Some(1_111_111_109 / 30)
        );
        assert_eq!(secret.matching_step(&code, 1_111_111_109 + 61), None);
        assert_eq!(
            secret.matching_step("081 804", 1_111_111_109),
            Some(37_037_036)
        );
        for bad in ["", "08180", "0818044", "08180x", "-81804"] {
            assert_eq!(secret.matching_step(bad, 1_111_111_109), None, "{bad:?}");
        }
    }

    #[test]
    fn an_enrolment_carries_the_secret_in_its_uri_and_qr_code() {
        let secret = TotpSecret::generate();
        assert_eq!(secret.as_bytes().len(), 20);
        let e = secret.enrolment("auth.example.com", "alice").unwrap();
        assert_eq!(e.secret.len(), 32, "160 bits in base32");
        assert!(e
            .uri
            .starts_with("otpauth://totp/auth.example.com:alice?secret="));
        assert!(e.uri.contains(&e.secret));
        assert!(e.uri.contains("issuer=auth.example.com"));
        assert!(e.qr_svg.starts_with("<?xml") && e.qr_svg.contains("<svg"));
        assert!(!e.qr_svg.contains("href"), "no external references");
        assert_eq!(format!("{secret:?}"), "TotpSecret([redacted])");
    }

    #[test]
    fn issuer_labels_hold_no_colon() {
        assert_eq!(issuer_label("authd"), "authd");
        assert_eq!(
            issuer_label("https://auth.example.com:8443/x"),
            "auth.example.com"
        );
        assert_eq!(issuer_label("http://"), "authd");
    }

    #[test]
    fn recovery_codes_are_distinct_and_read_loosely() {
        let codes = RecoveryCode::generate_set();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let hashes: std::collections::HashSet<_> = codes.iter().map(RecoveryCode::hash).collect();
        assert_eq!(hashes.len(), RECOVERY_CODES);
        let code = codes[0].expose();
        assert_eq!(code.len(), 19);
        let loose = code.replace('-', " ").to_uppercase();
        assert_eq!(recovery_code_hash(&loose), Some(codes[0].hash()));
        assert_eq!(recovery_code_hash("123456"), None);
        assert_eq!(recovery_code_hash("0000-0000-0000-0000"), None);
        assert_eq!(format!("{:?}", codes[0]), "RecoveryCode([redacted])");
    }
}
