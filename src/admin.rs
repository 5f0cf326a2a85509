//! The operator's commands (`authd users ...`): straight to the repository, with no server
//! running. Each opens the database (applying migrations), does one thing, and says what it
//! did in one line.

use anyhow::{bail, Context};
use chrono::{SecondsFormat, Utc};

use crate::{
    config::Config,
    domain::{EventKind, NewEvent, Username},
    repo::Repo,
};

async fn open(config: &Config) -> anyhow::Result<Repo> {
    Repo::connect(config)
        .await
        .context("cannot open the database (DATABASE_URL)")
}

/// The user called `name` (without regard to case), or an error naming it.
async fn find(repo: &Repo, name: &str) -> anyhow::Result<crate::repo::Credentials> {
    let normalized = Username::parse(name)
        .map(|u| u.normalized())
        .map_err(|e| anyhow::anyhow!("{name:?} is not a username: {e}"))?;
    match repo.find_credentials(&normalized).await? {
        Some(creds) => Ok(creds),
        None => bail!("no user {name:?}"),
    }
}

/// `users list`: one line per user, `id username email created_at [disabled]`.
pub async fn list(config: &Config) -> anyhow::Result<Vec<String>> {
    let repo = open(config).await?;
    let mut lines = Vec::new();
    let mut after = String::new();
    loop {
        let page = repo.list_users(&after, 500).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.username.to_ascii_lowercase();
        for (user, disabled_at) in &page {
            lines.push(format!(
                "{} {} {} {}{}",
                user.id,
                user.username,
                user.email.as_deref().unwrap_or("-"),
                user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                if disabled_at.is_some() {
                    " disabled"
                } else {
                    ""
                }
            ));
        }
    }
    repo.close().await;
    Ok(lines)
}

/// `users show NAME`.
pub async fn show(config: &Config, name: &str) -> anyhow::Result<String> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let sessions = repo.live_sessions(creds.user.id, Utc::now()).await?.len();
    let keys = repo.api_keys(creds.user.id, Utc::now()).await?.len();
    repo.close().await;
    let u = &creds.user;
    Ok(format!(
        "id: {}\nusername: {}\nemail: {}\nfull_name: {}\ncreated_at: {}\ndisabled: {}\nTOTP: {}\nlive sessions: {sessions}\nlive API keys: {keys}",
        u.id,
        u.username,
        u.email.as_deref().unwrap_or("-"),
        u.full_name.as_deref().unwrap_or("-"),
        u.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        creds
            .disabled_at
            .map_or("no".to_owned(), |at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        if creds.totp { "on" } else { "off" },
    ))
}

/// `users disable NAME` / `users enable NAME`.
pub async fn set_disabled(config: &Config, name: &str, disabled: bool) -> anyhow::Result<String> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    repo.set_disabled(creds.user.id, disabled.then(Utc::now))
        .await?;
    repo.close().await;
    Ok(if disabled {
        format!(
            "{} disabled: its tokens and API keys are refused from the next request on",
            creds.user.username
        )
    } else {
        format!("{} enabled", creds.user.username)
    })
}

/// `users revoke NAME`: every session and API key of the user.
pub async fn revoke(config: &Config, name: &str) -> anyhow::Result<String> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let (sessions, keys) = repo.revoke_everything(creds.user.id, Utc::now()).await?;
    repo.close().await;
    Ok(format!(
        "{}: {sessions} sessions ended, {keys} API keys revoked",
        creds.user.username
    ))
}

/// `users mfa-off NAME`: turns the user's TOTP off without a code, for an owner who lost
/// both the app and the recovery codes (recorded as `mfa_disabled`).
pub async fn mfa_off(config: &Config, name: &str) -> anyhow::Result<String> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let event = NewEvent {
        user_id: creds.user.id,
        kind: EventKind::MfaDisabled,
        at: Utc::now(),
        ip: None,
        user_agent: None,
    };
    let removed = repo.remove_totp(creds.user.id, &event).await?;
    repo.close().await;
    Ok(if removed {
        format!(
            "{}: TOTP off, recovery codes deleted; the password alone logs in",
            creds.user.username
        )
    } else {
        format!("{}: TOTP was not on", creds.user.username)
    })
}

/// `users delete NAME`: the user and everything of it.
pub async fn delete(config: &Config, name: &str) -> anyhow::Result<String> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    repo.delete_user(creds.user.id).await?;
    repo.close().await;
    Ok(format!(
        "{} deleted, with its sessions, tokens, API keys and second factor",
        creds.user.username
    ))
}
