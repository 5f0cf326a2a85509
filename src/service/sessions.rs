//! Logout, logout everywhere, and a user's own view of its sessions.

use uuid::Uuid;

use super::{AuthService, ClientInfo, Error, TokenRefusal};
use crate::{
    auth::RefreshToken,
    domain::{EventKind, SessionInfo},
};

impl AuthService {
    /// Ends the session a refresh token belongs to (any token of the chain will do).
    /// Ends the session of a refresh token. Refused when the token is unknown, or its
    /// session has already ended or expired (of two logouts at once, one succeeds).
    pub async fn logout_with_refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<(), Error> {
        let token = RefreshToken::parse(presented).ok_or(Error::RefreshTokenRefused)?;
        let record = self
            .inner
            .repo
            .find_refresh(&token.hash())
            .await?
            .ok_or(Error::RefreshTokenRefused)?;
        self.check_csrf(record.session_id, csrf)?;
        if !self
            .revoke(record.user_id, record.session_id, client)
            .await?
        {
            return Err(Error::RefreshTokenRefused);
        }
        Ok(())
    }

    /// Ends the session of an access token; refused when it has already ended or expired.
    pub async fn end_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self.revoke(user_id, session_id, client).await? {
            return Err(Error::AccessTokenRefused(TokenRefusal::SessionEnded));
        }
        Ok(())
    }

    /// Whether this call ended the session (it was live until now).
    async fn revoke(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<bool, Error> {
        let ended = self
            .inner
            .repo
            .revoke_session(
                session_id,
                "logout",
                self.now(),
                &self.event(user_id, EventKind::Logout, client),
            )
            .await?;
        if ended {
            tracing::info!(user_id = %user_id, session_id = %session_id, "logout");
        }
        Ok(ended)
    }

    pub async fn end_all_sessions(&self, user_id: Uuid, client: &ClientInfo) -> Result<(), Error> {
        let ended = self
            .inner
            .repo
            .revoke_user_sessions(
                user_id,
                "logout_all",
                self.now(),
                &self.event(user_id, EventKind::Logout, client),
            )
            .await?;
        tracing::info!(user_id = %user_id, sessions = ended, "logout from all sessions");
        Ok(())
    }

    /// The user's live sessions, newest first.
    pub async fn sessions(&self, user_id: Uuid) -> Result<Vec<SessionInfo>, Error> {
        Ok(self.inner.repo.live_sessions(user_id, self.now()).await?)
    }

    /// Ends one of the user's sessions; [`Error::NotFound`] if it has no such live session.
    pub async fn end_own_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        if !self
            .inner
            .repo
            .revoke_own_session(
                user_id,
                session_id,
                self.now(),
                &self.event(user_id, EventKind::SessionRevoked, client),
            )
            .await?
        {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %user_id, session_id = %session_id, "session revoked by its user");
        Ok(())
    }

    /// For a refresh token that came in a cookie (`csrf` is then the `X-CSRF-Token` header,
    /// `Some("")` when absent): the session's CSRF token must match.
    pub(super) fn check_csrf(&self, session_id: Uuid, csrf: Option<&str>) -> Result<(), Error> {
        match csrf {
            Some(presented) if !self.inner.csrf_key.verify(session_id, presented) => {
                Err(Error::CsrfRefused)
            }
            _ => Ok(()),
        }
    }
}
