//! The token pair a login or a refresh answers with, and the lifetimes it follows.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::AuthService;
use crate::{
    auth::{AccessClaims, RefreshToken},
    repo::RefreshRecord,
};

/// Lifetimes of tokens and sessions.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub session_max: Duration,
    pub refresh_grace: Duration,
    /// How long account events are kept.
    pub event_retention: TimeDelta,
}

/// A new access token and the refresh token that goes with it. `Debug` hides both tokens.
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: i64,
    /// The session's CSRF token, for a browser that keeps the refresh token in a cookie.
    pub csrf_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// What an access token says about its session.
#[derive(Clone, Copy)]
pub(super) struct SessionRef<'a> {
    pub user_id: Uuid,
    pub username: &'a str,
    pub session_id: Uuid,
    /// The session's absolute end, which no token outlives.
    pub expires_at: DateTime<Utc>,
}

impl RefreshRecord {
    pub(super) fn session(&self) -> SessionRef<'_> {
        SessionRef {
            user_id: self.user_id,
            username: &self.username,
            session_id: self.session_id,
            expires_at: self.expires_at,
        }
    }
}

impl AuthService {
    /// Signs an access token for `session` and pairs it with `refresh`.
    pub(super) fn token_pair(
        &self,
        session: SessionRef<'_>,
        now: DateTime<Utc>,
        refresh: &RefreshToken,
        idle_expires_at: DateTime<Utc>,
    ) -> anyhow::Result<TokenPair> {
        let keys = self.keys();
        // An access token never outlives its session.
        let exp = (now + self.inner.policy.access_ttl).min(session.expires_at);
        let claims = AccessClaims {
            sub: session.user_id,
            username: session.username.to_owned(),
            sid: session.session_id,
            iat: now.timestamp(),
            exp: exp.timestamp(),
            jti: Uuid::new_v4(),
            iss: keys.issuer().to_owned(),
            aud: keys.audience().to_owned(),
        };
        Ok(TokenPair {
            access_token: keys.sign(&claims)?,
            expires_in: (exp - now).num_seconds().max(0),
            refresh_token: refresh.encode(),
            refresh_expires_in: (idle_expires_at - now).num_seconds().max(0),
            csrf_token: self.inner.csrf_key.token(session.session_id),
        })
    }
}
