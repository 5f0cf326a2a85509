//! The refresh grant: rotation, the grace window for concurrent refreshes, and reuse
//! detection (RFC 9700 §4.14).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{AuthService, ClientInfo, Error, TokenPair};
use crate::{
    auth::RefreshToken,
    domain::EventKind,
    repo::{RefreshRecord, Rotation},
};

/// What a refresh came to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was current: it is rotated away and this is its successor.
    Rotated(TokenPair),
    /// The token was rotated away within the grace window and its successor is still
    /// current: that successor again, with a fresh access token.
    Grace(TokenPair),
    /// A token rotated away earlier, or an older ancestor: the session is now revoked.
    Reused,
    /// No such token.
    Unknown,
    /// The session is past its idle or absolute lifetime.
    Expired,
    /// The session was already ended, or the account is disabled.
    Revoked,
}

impl AuthService {
    /// The refresh grant: rotates the presented token (see the module docs of
    /// [`crate::auth::refresh`] and the contract's "Token semantics").
    pub async fn refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<RefreshOutcome, Error> {
        let result = self.rotate(presented, client, csrf).await;
        let outcome = match &result {
            Ok(RefreshOutcome::Rotated(_)) => "rotated",
            Ok(RefreshOutcome::Grace(_)) => "grace",
            Ok(RefreshOutcome::Reused) => "reused",
            Ok(RefreshOutcome::Unknown) => "unknown",
            Ok(RefreshOutcome::Expired) => "expired",
            Ok(RefreshOutcome::Revoked) => "revoked",
            Err(Error::CsrfRefused) => "csrf_refused",
            Err(_) => "error",
        };
        metrics::counter!("authd_refreshes_total", "outcome" => outcome).increment(1);
        result
    }

    async fn rotate(
        &self,
        presented: &str,
        client: &ClientInfo,
        csrf: Option<&str>,
    ) -> Result<RefreshOutcome, Error> {
        let Some(token) = RefreshToken::parse(presented) else {
            return Ok(RefreshOutcome::Unknown);
        };
        let hash = token.hash();
        let now = self.now();
        let Some(record) = self.inner.repo.find_refresh(&hash).await? else {
            return Ok(RefreshOutcome::Unknown);
        };
        self.check_csrf(record.session_id, csrf)?;
        let child = token.child(&self.inner.derivation_key);
        let mut record = record;
        let mut judgement = self.judge(&record, now);
        if judgement == Judgement::Rotate {
            let idle_expires_at = (now + self.inner.policy.refresh_ttl).min(record.expires_at);
            let rotation = Rotation {
                session_id: record.session_id,
                from_generation: record.token_generation,
                new_token_hash: child.hash(),
                now,
                idle_expires_at,
            };
            if self.inner.repo.rotate(rotation).await? {
                let pair = self.token_pair(record.session(), now, &child, idle_expires_at)?;
                return Ok(RefreshOutcome::Rotated(pair));
            }
            // A concurrent refresh of the same token won: judge what it left behind (within
            // the grace window, its result again).
            record = match self.inner.repo.find_refresh(&hash).await? {
                Some(record) => record,
                None => return Ok(RefreshOutcome::Unknown),
            };
            judgement = self.judge(&record, now);
        }
        Ok(match judgement {
            Judgement::Rotate => {
                return Err(anyhow::anyhow!("a lost rotation left its session unchanged").into())
            }
            Judgement::Grace => {
                // The child of the presented token is the session's current token.
                let pair =
                    self.token_pair(record.session(), now, &child, record.idle_expires_at)?;
                RefreshOutcome::Grace(pair)
            }
            Judgement::Reused => {
                // The chain has leaked (RFC 9700 §4.14).
                self.inner
                    .repo
                    .revoke_session(
                        record.session_id,
                        "refresh_token_reuse",
                        now,
                        &self.event(record.user_id, EventKind::RefreshReuseDetected, client),
                    )
                    .await?;
                tracing::warn!(
                    user_id = %record.user_id,
                    session_id = %record.session_id,
                    "refresh token reuse detected; session revoked"
                );
                RefreshOutcome::Reused
            }
            Judgement::Expired => RefreshOutcome::Expired,
            Judgement::Revoked => RefreshOutcome::Revoked,
        })
    }

    /// What a presented refresh token's record calls for at `now`.
    fn judge(&self, record: &RefreshRecord, now: DateTime<Utc>) -> Judgement {
        judge(record, now, self.inner.policy.refresh_grace)
    }
}

/// What a presented refresh token's record calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    /// It is the session's current token, within its lifetimes: rotate it.
    Rotate,
    /// Its child is current and it was rotated within the grace window: answer with the child.
    Grace,
    /// Rotated away earlier, or an older ancestor.
    Reused,
    /// Past the session's idle or absolute lifetime.
    Expired,
    /// The session was ended or the account disabled.
    Revoked,
}

/// The refresh rules of the contract ("Token semantics"), as a function of the stored state.
fn judge(record: &RefreshRecord, now: DateTime<Utc>, grace: Duration) -> Judgement {
    if record.revoked_at.is_some() || record.disabled_at.is_some() {
        return Judgement::Revoked;
    }
    if now >= record.expires_at {
        return Judgement::Expired;
    }
    if record.token_generation == record.current_generation {
        return if now >= record.idle_expires_at {
            Judgement::Expired
        } else {
            Judgement::Rotate
        };
    }
    // `now` may have been read before a concurrent rotation happened, so the age can be
    // negative: that is the very case the grace window exists for.
    let window = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
    let just_rotated = record.token_generation + 1 == record.current_generation
        && !grace.is_zero()
        && now - record.rotated_at <= window;
    if just_rotated {
        Judgement::Grace
    } else {
        Judgement::Reused
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn record(token_generation: i64, current_generation: i64) -> (RefreshRecord, DateTime<Utc>) {
        let now = Utc::now();
        let record = RefreshRecord {
            session_id: Uuid::new_v4(),
            token_generation,
            current_generation,
            user_id: Uuid::new_v4(),
            username: "alice".into(),
            rotated_at: now,
            idle_expires_at: now + TimeDelta::hours(1),
            expires_at: now + TimeDelta::hours(2),
            revoked_at: None,
            disabled_at: None,
        };
        (record, now)
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn the_current_token_is_rotated_until_its_idle_or_absolute_end() {
        let (mut r, now) = record(3, 3);
        assert_eq!(judge(&r, now, GRACE), Judgement::Rotate);
        assert_eq!(
            judge(&r, now + TimeDelta::hours(1), GRACE),
            Judgement::Expired
        );
        r.idle_expires_at = now + TimeDelta::hours(5);
        assert_eq!(
            judge(&r, now + TimeDelta::hours(2), GRACE),
            Judgement::Expired
        );
    }

    #[test]
    fn the_parent_within_the_window_gets_grace_and_anything_older_is_reuse() {
        let (r, now) = record(2, 3);
        assert_eq!(judge(&r, now, GRACE), Judgement::Grace);
        assert_eq!(
            judge(&r, now + TimeDelta::seconds(10), GRACE),
            Judgement::Grace
        );
        assert_eq!(
            judge(&r, now + TimeDelta::seconds(11), GRACE),
            Judgement::Reused
        );
        // Read before the rotation that beat it: a negative age is within the window.
        assert_eq!(
            judge(&r, now - TimeDelta::seconds(1), GRACE),
            Judgement::Grace
        );
        assert_eq!(
            judge(&r, now, Duration::ZERO),
            Judgement::Reused,
            "grace off"
        );
        let (grandparent, now) = record(1, 3);
        assert_eq!(judge(&grandparent, now, GRACE), Judgement::Reused);
    }

    #[test]
    fn an_ended_session_or_disabled_account_is_revoked_before_anything_else() {
        let (mut r, now) = record(1, 3);
        r.revoked_at = Some(now);
        assert_eq!(judge(&r, now, GRACE), Judgement::Revoked);
        let (mut r, now) = record(3, 3);
        r.disabled_at = Some(now);
        assert_eq!(judge(&r, now, GRACE), Judgement::Revoked);
    }
}
