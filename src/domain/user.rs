use chrono::{DateTime, Utc};
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

fn rfc3339_utc<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
