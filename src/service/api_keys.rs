//! A user's API keys: made, listed and revoked with a session's access token.

use chrono::TimeDelta;
use uuid::Uuid;

use super::{AuthService, ClientInfo, Error};
use crate::{
    auth::api_key::ApiKey,
    domain::{ApiKeyInfo, EventKind},
    repo::NewApiKey,
};

/// A new API key: what lists show of it, and the key itself, shown this once.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub info: ApiKeyInfo,
    pub key: ApiKey,
}

impl AuthService {
    /// Creates an API key for `user_id`, valid for `expires_in_days` if given.
    pub async fn create_api_key(
        &self,
        user_id: Uuid,
        name: &str,
        expires_in_days: Option<u32>,
        client: &ClientInfo,
    ) -> Result<CreatedApiKey, Error> {
        let now = self.now();
        let key = ApiKey::generate();
        let info = self
            .inner
            .repo
            .insert_api_key(
                &NewApiKey {
                    id: Uuid::new_v4(),
                    user_id,
                    name,
                    prefix: key.shown(),
                    key_hash: &key.hash(),
                    created_at: now,
                    expires_at: expires_in_days.map(|days| now + TimeDelta::days(days.into())),
                },
                &self.event(user_id, EventKind::ApiKeyCreated, client),
            )
            .await?;
        tracing::info!(user_id = %user_id, key_id = %info.id, "API key created");
        Ok(CreatedApiKey { info, key })
    }

    /// The user's live keys, newest first.
    pub async fn api_keys(&self, user_id: Uuid) -> Result<Vec<ApiKeyInfo>, Error> {
        Ok(self.inner.repo.api_keys(user_id, self.now()).await?)
    }

    /// Revokes one of the user's keys; [`Error::NotFound`] if it has no such live key.
    pub async fn revoke_api_key(
        &self,
        user_id: Uuid,
        key_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self
            .inner
            .repo
            .revoke_api_key(
                user_id,
                key_id,
                self.now(),
                &self.event(user_id, EventKind::ApiKeyRevoked, client),
            )
            .await?
        {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %user_id, key_id = %key_id, "API key revoked");
        Ok(())
    }
}
