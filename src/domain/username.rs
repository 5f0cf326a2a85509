use std::fmt;

/// A username: 3 to 32 characters of `[A-Za-z0-9_.-]`. Case is kept for display; uniqueness
/// and login use [`Username::normalized`].
#[derive(Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err("must be at least 3 characters");
        }
        if len > Self::MAX_LEN {
            return Err("must be at most 32 characters");
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes usernames unique without regard to case.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.0).finish()
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in ["abc", "John_Doe", "a.b-c_9", &"x".repeat(32)] {
            assert_eq!(Username::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_lengths_and_characters() {
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "has space",
            "émile",
            "a/b",
            "semi;colon",
            "nul\0x",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normalizes_case_only() {
        let u = Username::parse("Alice.Smith").unwrap();
        assert_eq!(u.normalized(), "alice.smith");
        assert_eq!(u.as_str(), "Alice.Smith");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_rule(raw in "\\PC{0,40}") {
            if let Ok(u) = Username::parse(&raw) {
                let n = u.as_str().len();
                proptest::prop_assert!((3..=32).contains(&n));
                proptest::prop_assert!(u.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
                proptest::prop_assert_eq!(Username::parse(&u.normalized()).unwrap().normalized(), u.normalized());
            }
        }

        #[test]
        fn every_valid_name_is_accepted(raw in "[A-Za-z0-9_.-]{3,32}") {
            proptest::prop_assert!(Username::parse(&raw).is_ok());
        }
    }
}
