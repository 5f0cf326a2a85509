use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// A new password that meets the policy of NIST SP 800-63B §3.1.1.2: 8 to 128 characters, no
/// composition rules, not containing the username, and not a common or easily guessed value.
/// The policy judges the password in Unicode NFKC form, the form that is hashed (see
/// [`normalize`]).
///
/// The guessability check uses zxcvbn, whose dictionaries hold the ~30,000 most common
/// passwords and recognise their usual variants (l33t, suffixes, keyboard walks, repeats).
pub struct Password(SecretString);

/// Why a password was refused; the `Display` text is the message returned to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("must be at least {} characters", Password::MIN_LEN)]
    TooShort,
    #[error("must be at most {} characters", Password::MAX_LEN)]
    TooLong,
    #[error("must not contain the username")]
    ContainsUsername,
    #[error("is too common or too easy to guess{0}")]
    TooCommon(String),
}

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;
    /// zxcvbn's score 2 means an estimated ≥ 10^6 guesses: beyond any common-password list.
    const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Two;

    /// Checks the policy. `username` and `email` are the account's own, which a password must
    /// not be built from. This costs up to a few milliseconds for long inputs: call it off the
    /// async workers.
    pub fn parse(
        raw: SecretString,
        username: &str,
        email: Option<&str>,
    ) -> Result<Self, PasswordPolicyError> {
        let normalized = normalize(raw.expose_secret());
        drop(raw);
        let pw = normalized.expose_secret();
        let len = pw.chars().count();
        if len < Self::MIN_LEN {
            return Err(PasswordPolicyError::TooShort);
        }
        if len > Self::MAX_LEN {
            return Err(PasswordPolicyError::TooLong);
        }
        if pw.to_lowercase().contains(&username.to_lowercase()) {
            return Err(PasswordPolicyError::ContainsUsername);
        }
        let mut inputs = vec![username];
        inputs.extend(email);
        let estimate = zxcvbn::zxcvbn(pw, &inputs);
        if estimate.score() < Self::MIN_SCORE {
            let why = estimate
                .feedback()
                .and_then(|f| f.warning())
                .map(|w| format!(" ({})", w.to_string().trim_end_matches('.').to_lowercase()))
                .unwrap_or_default();
            return Err(PasswordPolicyError::TooCommon(why));
        }
        drop(estimate);
        Ok(Self(normalized))
    }

    /// Loads zxcvbn's dictionaries (a noticeable pause the first time) so no request pays for it.
    pub fn warm_up() {
        let _ = zxcvbn::zxcvbn("warm-up-value", &[]);
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password in Unicode NFKC form (NIST SP 800-63B §5.1.1.2), so that the same password
/// typed on two keyboards, composed or decomposed, full-width or not, is the same password.
pub fn normalize(password: &str) -> SecretString {
    SecretString::from(password.nfkc().collect::<String>())
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str, user: &str) -> Result<Password, PasswordPolicyError> {
        Password::parse(SecretString::from(pw), user, Some("user@example.com"))
    }

    #[test]
    fn accepts_long_uncommon_passwords_without_composition_rules() {
        for ok in [
            "correct horse battery staple",
            "Bench-pass-12345",
            "alice-secret-42",
            "s3cure-Passw0rd!",
        ] {
            assert!(check(ok, "bob").is_ok(), "{ok}");
        }
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(
            check("short", "bob").unwrap_err(),
            PasswordPolicyError::TooShort
        );
        // 8 characters, more bytes: allowed by length (refused or not on other grounds).
        assert_ne!(
            check("ééééééé1", "bob").err(),
            Some(PasswordPolicyError::TooShort)
        );
        assert_eq!(
            check(&"x7Qz".repeat(33), "bob").unwrap_err(),
            PasswordPolicyError::TooLong
        );
    }

    #[test]
    fn refuses_the_username_inside_without_regard_to_case() {
        assert_eq!(
            check("alice", "alice").unwrap_err(),
            PasswordPolicyError::TooShort
        );
        assert_eq!(
            check("my-ALICE-pw-93", "alice").unwrap_err(),
            PasswordPolicyError::ContainsUsername
        );
        assert_eq!(
            check("alicealice", "AliCe").unwrap_err(),
            PasswordPolicyError::ContainsUsername
        );
    }

    #[test]
    fn refuses_common_passwords_and_their_variants() {
        for common in [
            "password",
            "password123",
            "12345678",
            "qwerty123",
            "P@ssw0rd",
            "iloveyou2",
            "letmein!",
        ] {
            match check(common, "bob") {
                Err(PasswordPolicyError::TooCommon(_)) => {}
                other => panic!("{common}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let pw = check("correct horse battery staple", "bob").unwrap();
        assert!(!format!("{pw:?}").contains("horse"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn parse_never_panics(raw in "\\PC{0,150}", user in "[a-z]{3,10}") {
            // The policy measures the NFKC form, which can be longer than what was typed.
            let len = normalize(&raw).expose_secret().chars().count();
            match check(&raw, &user) {
                Ok(_) => proptest::prop_assert!((8..=128).contains(&len)),
                Err(PasswordPolicyError::TooShort) => proptest::prop_assert!(len < 8),
                Err(PasswordPolicyError::TooLong) => proptest::prop_assert!(len > 128),
                Err(_) => {}
            }
        }
    }
}
