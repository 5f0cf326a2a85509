use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A user's id: a random UUID, never reused.
pub type UserId = Uuid;

/// The user object of the contract. It has no password field, so none can ever be serialized.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    #[serde(serialize_with = "rfc3339_utc")]
    pub created_at: DateTime<Utc>,
}

/// `at` as RFC 3339 in UTC to the second (`2026-11-23T21:37:08Z`), as
/// `to_rfc3339_opts(Secs, true)` writes it, but on the stack: every `/users/me` answer carries
/// one.
fn rfc3339_utc<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let (date, time) = (at.date_naive(), at.time());
    let year = u32::try_from(date.year()).ok().filter(|&y| y <= 9999);
    // A leap second (nanoseconds past 10^9) or a year beyond four digits: chrono's own form.
    let (Some(year), false) = (year, time.nanosecond() >= 1_000_000_000) else {
        return s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true));
    };
    let mut text = *b"0000-00-00T00:00:00Z";
    for (range, value) in [
        (0..4, year),
        (5..7, date.month()),
        (8..10, date.day()),
        (11..13, time.hour()),
        (14..16, time.minute()),
        (17..19, time.second()),
    ] {
        let mut value = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    s.serialize_str(std::str::from_utf8(&text).expect("ASCII digits and separators"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn written(at: DateTime<Utc>) -> String {
        rfc3339_utc(&at, serde_json::value::Serializer)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn writes_what_chrono_writes() {
        let leap = Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap();
        let leap = leap.with_nanosecond(1_500_000_000).unwrap();
        for at in [
            Utc.with_ymd_and_hms(2026, 11, 23, 21, 37, 8).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            leap,
        ] {
            assert_eq!(
                written(at),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "{at:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn writes_what_chrono_writes_for_any_second(secs in -62_135_596_800i64..253_402_300_800, nanos in 0u32..1_000_000_000) {
            let at = Utc.timestamp_opt(secs, nanos).unwrap();
            proptest::prop_assert_eq!(written(at), at.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
}
