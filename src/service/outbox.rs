//! The mail sender: takes due mails from the outbox and hands them to SMTP.
//!
//! Every replica with an SMTP server configured runs one. It claims due rows with a lease
//! (a crashed sender's rows come back when the lease ends), recomputes each mail's token from
//! its row, and sends. A mail the server did not take is retried after 1 s, then 2, 4 ... up
//! to 60 s between attempts, until its token expires (30 minutes for a reset, a day for a
//! verification); one the server refused for good (`5xx`) is not retried. A mail whose token
//! was used or made void before it went out is dropped. Requests never wait for any of this.

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use tokio::sync::{watch, Notify};

use super::AuthService;
use crate::{
    auth::email_token::EmailTokenKey,
    mail::{Mailer, SendError},
    repo::{MailEnd, OutgoingMail, Repo},
};

/// How often a sender looks for due mail when nothing wakes it (retries, other replicas'
/// mail).
const POLL: Duration = Duration::from_secs(1);
/// How long a claimed mail is this sender's alone: longer than an SMTP attempt can take.
const LEASE: TimeDelta = TimeDelta::seconds(120);
/// Mails claimed at once.
const BATCH: u32 = 16;
/// The longest wait between two attempts at one mail.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The mail sender of this replica.
pub struct Outbox {
    repo: Repo,
    mailer: Mailer,
    key: EmailTokenKey,
    wake: Arc<Notify>,
}

impl AuthService {
    /// The sender of the mail this service queues, through `mailer`.
    pub fn outbox(&self, mailer: Mailer) -> Outbox {
        Outbox {
            repo: self.inner.repo.clone(),
            mailer,
            key: self.inner.email_key.clone(),
            wake: self.inner.outbox_wake.clone(),
        }
    }
}

/// The wait before the next attempt at a mail tried `attempts` times: 1 s doubling, at most
/// [`MAX_RETRY_DELAY`].
pub fn retry_delay(attempts: i64) -> Duration {
    let doublings = attempts.clamp(1, 7) - 1;
    Duration::from_secs(1 << doublings).min(MAX_RETRY_DELAY)
}

impl Outbox {
    /// Sends due mail until `stop` turns true; a mail being handed over when it does is
    /// finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let claimed = match self.repo.claim_mail(Utc::now(), LEASE, BATCH).await {
                Ok(claimed) => {
                    failing = false;
                    claimed
                }
                Err(e) => {
                    // Once per outage, not once a second.
                    if !failing {
                        tracing::warn!(error = %e, "the mail outbox cannot be read; retrying");
                    }
                    failing = true;
                    Vec::new()
                }
            };
            let full = claimed.len() == BATCH as usize;
            for mail in claimed {
                self.deliver(mail).await;
            }
            if full {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn deliver(&self, mail: OutgoingMail) {
        let now = Utc::now();
        let Some(token_id) = mail.token_id else {
            tracing::info!(mail_id = %mail.id, "mail dropped: its token was used or replaced before it went out");
            self.end(&mail, MailEnd::Failed).await;
            return;
        };
        if now >= mail.give_up_at {
            tracing::warn!(mail_id = %mail.id, attempts = mail.attempts, "mail given up: not handed to SMTP before its token expired");
            metrics::counter!("authd_mails_total", "outcome" => "given_up").increment(1);
            self.end(&mail, MailEnd::Failed).await;
            return;
        }
        let token = self.key.token(token_id);
        let sent = match self
            .mailer
            .message(mail.id, mail.purpose, &mail.recipient, &token)
        {
            Ok(message) => self.mailer.send(message).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                tracing::info!(mail_id = %mail.id, purpose = mail.purpose.as_str(), "mail sent");
                metrics::counter!("authd_mails_total", "outcome" => "sent").increment(1);
                self.end(&mail, MailEnd::Sent).await;
            }
            Err(SendError::Permanent(why)) => {
                tracing::warn!(mail_id = %mail.id, error = %why, "mail refused by the SMTP server; not retried");
                metrics::counter!("authd_mails_total", "outcome" => "refused").increment(1);
                self.end(&mail, MailEnd::Failed).await;
            }
            Err(SendError::Transient(why)) => {
                let delay = retry_delay(mail.attempts);
                tracing::warn!(
                    mail_id = %mail.id,
                    attempts = mail.attempts,
                    retry_in_secs = delay.as_secs(),
                    error = %why,
                    "mail not sent; will retry"
                );
                metrics::counter!("authd_mails_total", "outcome" => "retried").increment(1);
                let at = Utc::now() + TimeDelta::from_std(delay).unwrap_or(LEASE);
                if let Err(e) = self.repo.retry_mail(mail.id, at).await {
                    // The lease runs out instead, and the mail is tried again then.
                    tracing::warn!(mail_id = %mail.id, error = %e, "could not schedule a mail's retry");
                }
            }
        }
    }

    async fn end(&self, mail: &OutgoingMail, end: MailEnd) {
        if let Err(e) = self.repo.end_mail(mail.id, end, Utc::now()).await {
            // A sent mail could go out again when its lease ends: logged, as it may.
            tracing::warn!(mail_id = %mail.id, error = %e, "could not record how a mail ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_second_doubling_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(0), Duration::from_secs(1));
        assert_eq!(retry_delay(i64::MAX), MAX_RETRY_DELAY);
        // Attempts over ten minutes: a mail is tried at least this often before its
        // shortest-lived token (30 minutes) expires.
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        while elapsed < Duration::from_secs(600) {
            attempts += 1;
            elapsed += retry_delay(attempts);
        }
        assert!(attempts >= 10, "{attempts}");
    }
}
