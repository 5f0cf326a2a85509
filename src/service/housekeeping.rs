//! The hourly deletion of what has expired.

use chrono::TimeDelta;

use super::{AuthService, Error};

/// What housekeeping removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub attempt_counts: u64,
    pub events: u64,
    pub mfa_challenges: u64,
    pub email_tokens: u64,
    pub mails: u64,
}

impl AuthService {
    /// Deletes what has expired: sessions past their idle or absolute end (with their
    /// refresh-token hashes), and attempt counts untouched for a day. Run hourly.
    pub async fn housekeeping(&self) -> Result<Pruned, Error> {
        let now = self.now();
        let repo = &self.inner.repo;
        // Mails are kept two days: the hourly cap counts them, and every token has expired by then.
        let (email_tokens, mails) = repo.prune_mail(now, now - TimeDelta::days(2)).await?;
        Ok(Pruned {
            sessions: repo.prune_sessions(now).await?,
            attempt_counts: repo.prune_attempts(now - TimeDelta::days(1)).await?,
            events: repo
                .prune_events(now - self.inner.policy.event_retention)
                .await?,
            mfa_challenges: repo.prune_challenges(now).await?,
            email_tokens,
            mails,
        })
    }
}
