use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A user's id: a random UUID, never reused.
pub type UserId = Uuid;

/// The user object of the contract. It has no password field, so none can ever be serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    /// The address was shown to be the user's, by a verification mail's token.
    pub email_verified: bool,
    pub full_name: Option<String>,
    #[serde(serialize_with = "rfc3339_seconds")]
    pub created_at: DateTime<Utc>,
}

/// RFC 3339 in UTC, to the second: `2026-11-23T21:37:08Z`, as every time authd shows.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn rfc3339_seconds<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn created_at_is_written_to_the_second_in_utc() {
        let user = User {
            id: Uuid::nil(),
            username: "alice".into(),
            email: None,
            email_verified: false,
            full_name: None,
            created_at: Utc
                .with_ymd_and_hms(2026, 11, 23, 21, 37, 8)
                .unwrap()
                .with_nanosecond(123_456_789)
                .unwrap(),
        };
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(json["created_at"], "2026-11-23T21:37:08Z");
        assert!(json.get("password_hash").is_none());
    }
}
