use std::{fmt, str::FromStr};

/// A syntactically valid e-mail address (RFC 5321 limits: at most 254 characters).
/// Unique without regard to case through [`Email::normalized`].
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.len() > Self::MAX_LEN {
            return Err("must be at most 254 characters");
        }
        // email_address follows RFC 5322; on top of it we want a dotted domain, as any address
        // a user can actually receive mail at has one, and no quoted or bracketed forms.
        let parsed = email_address::EmailAddress::from_str(raw)
            .map_err(|_| "is not a valid e-mail address")?;
        let domain = parsed.domain();
        let simple_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if !simple_domain || parsed.local_part().starts_with('"') || parsed.display_part() != "" {
            return Err("is not a valid e-mail address");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes addresses unique without regard to case.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "Jo@Example.COM",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_invalid_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "Name <a@example.com>",
            &format!("{}@example.com", "x".repeat(250)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn normalizes_case() {
        assert_eq!(
            Email::parse("Jo@Example.COM").unwrap().normalized(),
            "jo@example.com"
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(raw in "\\PC{0,300}") {
            if let Ok(e) = Email::parse(&raw) {
                proptest::prop_assert!(e.as_str().len() <= Email::MAX_LEN);
                proptest::prop_assert!(e.as_str().contains('@'));
            }
        }

        #[test]
        fn plain_addresses_are_accepted(local in "[a-z0-9+_-]{1,10}(\\.[a-z0-9+_-]{1,10})?", domain in "[a-z0-9]{1,10}(-[a-z0-9]{1,8})?\\.[a-z]{2,6}") {
            let addr = format!("{local}@{domain}");
            proptest::prop_assert!(Email::parse(&addr).is_ok(), "{}", addr);
        }
    }
}
