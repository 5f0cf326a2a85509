//! Who a request is: an access token whose session is live, or an API key.

use uuid::Uuid;

use super::{AuthService, Error};
use crate::{
    auth::{api_key, jwt::TokenError},
    domain::User,
    repo::api_keys::LAST_USED_PRECISION,
};

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Expired,
    /// Malformed, forged, for another issuer or audience, or signed by an unknown key.
    Invalid,
    /// Its session was ended, or its account disabled.
    SessionEnded,
}

/// An authenticated request: the user, and what it presented.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub credential: Credential,
}

/// What a request authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token of this session.
    Session(Uuid),
    /// This API key.
    ApiKey(Uuid),
}

impl AuthService {
    /// Checks a presented credential: an API key (see [`crate::auth::api_key`]) or an access
    /// token. Either is checked against the database on every request, so that a logout or
    /// a revoked key holds at once on every replica.
    pub async fn authenticate(&self, presented: &str) -> Result<Authenticated, Error> {
        if api_key::looks_like_key(presented) {
            return self.authenticate_api_key(presented).await;
        }
        self.authenticate_access_token(presented).await
    }

    async fn authenticate_api_key(&self, presented: &str) -> Result<Authenticated, Error> {
        // A key with a bad checksum (a typo, a truncated paste) costs no database read.
        let hash =
            api_key::parse(presented).ok_or(Error::AccessTokenRefused(TokenRefusal::Invalid))?;
        let now = self.now();
        let found = self
            .inner
            .repo
            .api_key_user(hash, now)
            .await?
            .ok_or(Error::AccessTokenRefused(TokenRefusal::Invalid))?;
        if found
            .last_used_at
            .is_none_or(|at| at < now - LAST_USED_PRECISION)
        {
            // Off the request's path: the answer does not wait for the write.
            let repo = self.inner.repo.clone();
            tokio::spawn(async move {
                if let Err(e) = repo.touch_api_key(found.key_id, now).await {
                    tracing::debug!(error = %e, "recording an API key's use failed");
                }
            });
        }
        Ok(Authenticated {
            user: found.user,
            credential: Credential::ApiKey(found.key_id),
        })
    }

    /// Checks an access token and that its session is still live.
    async fn authenticate_access_token(&self, access_token: &str) -> Result<Authenticated, Error> {
        let claims = self
            .keys()
            .verify(access_token, self.now().timestamp())
            .map_err(|e| {
                Error::AccessTokenRefused(match e {
                    TokenError::Expired => TokenRefusal::Expired,
                    TokenError::Invalid => TokenRefusal::Invalid,
                })
            })?;
        let user = self
            .inner
            .repo
            .session_user(claims.sid, claims.sub)
            .await?
            .ok_or(Error::AccessTokenRefused(TokenRefusal::SessionEnded))?;
        Ok(Authenticated {
            user,
            credential: Credential::Session(claims.sid),
        })
    }
}
