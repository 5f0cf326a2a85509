//! The operator's commands (`authd users ...`, `authd sessions ...`, `authd keys list`):
//! straight to the repository, with no server running. Not through the service: loading it
//! opens the signing keys and server secrets, which needs `AUTHD_MASTER_KEY`, and these
//! commands must work for an operator who holds only the database (to disable an account
//! during an incident, say); each records the events the service would. Each opens the database (applying
//! migrations), does one thing, and says what it did: in lines for people, or as one JSON
//! document for scripts (`--json`).

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{
    config::Config,
    domain::{rfc3339, EventKind, NewEvent, User, Username},
    repo::{Credentials, Repo},
};

/// What a command did: for people, and for scripts.
pub struct Said {
    pub text: String,
    pub json: Value,
}

async fn open(config: &Config) -> anyhow::Result<Repo> {
    Repo::connect(&config.database)
        .await
        .context("cannot open the database (DATABASE_URL)")
}

/// The user called `name` (without regard to case), or an error naming it.
async fn find(repo: &Repo, name: &str) -> anyhow::Result<Credentials> {
    let normalized = Username::parse(name)
        .map(|u| u.normalized())
        .map_err(|e| anyhow::anyhow!("{name:?} is not a username: {e}"))?;
    match repo.find_credentials(&normalized).await? {
        Some(creds) => Ok(creds),
        None => bail!("no user {name:?}"),
    }
}

/// A user as scripts see it: the user object, and when it was disabled (`null` if not).
fn user_json(user: &User, disabled_at: Option<DateTime<Utc>>) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "full_name": user.full_name,
        "created_at": rfc3339(user.created_at),
        "disabled_at": disabled_at.map(rfc3339),
    })
}

/// An event the operator caused (no client address or agent).
fn operator_event(user_id: uuid::Uuid, kind: EventKind) -> NewEvent<'static> {
    NewEvent {
        user_id,
        kind,
        at: Utc::now(),
        ip: None,
        user_agent: None,
    }
}

/// `users list`: one line per user, `id username email created_at [disabled]`.
pub async fn list(config: &Config) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let mut lines = Vec::new();
    let mut users = Vec::new();
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
                rfc3339(user.created_at),
                if disabled_at.is_some() {
                    " disabled"
                } else {
                    ""
                }
            ));
            users.push(user_json(user, *disabled_at));
        }
    }
    repo.close().await;
    Ok(Said {
        text: lines.join("\n"),
        json: Value::Array(users),
    })
}

/// `users show NAME`.
pub async fn show(config: &Config, name: &str) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let sessions = repo.live_sessions(creds.user.id, Utc::now()).await?.len();
    let keys = repo.api_keys(creds.user.id, Utc::now()).await?.len();
    repo.close().await;
    let u = &creds.user;
    let mut json = user_json(u, creds.disabled_at);
    json["totp_enabled"] = creds.totp.into();
    json["live_sessions"] = sessions.into();
    json["live_api_keys"] = keys.into();
    Ok(Said {
        text: format!(
            "id: {}\nusername: {}\nemail: {}{}\nfull_name: {}\ncreated_at: {}\ndisabled: {}\nTOTP: {}\nlive sessions: {sessions}\nlive API keys: {keys}",
            u.id,
            u.username,
            u.email.as_deref().unwrap_or("-"),
            match (&u.email, u.email_verified) {
                (Some(_), true) => " (verified)",
                (Some(_), false) => " (not verified)",
                (None, _) => "",
            },
            u.full_name.as_deref().unwrap_or("-"),
            rfc3339(u.created_at),
            creds.disabled_at.map_or("no".to_owned(), rfc3339),
            if creds.totp { "on" } else { "off" },
        ),
        json,
    })
}

/// `users disable NAME` / `users enable NAME`.
pub async fn set_disabled(config: &Config, name: &str, disabled: bool) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let at = disabled.then(Utc::now);
    repo.set_disabled(creds.user.id, at).await?;
    repo.close().await;
    let user = &creds.user.username;
    Ok(Said {
        text: if disabled {
            format!("{user} disabled: its tokens and API keys are refused from the next request on")
        } else {
            format!("{user} enabled")
        },
        json: user_json(&creds.user, at),
    })
}

/// `users revoke NAME`: every session and API key of the user.
pub async fn revoke(config: &Config, name: &str) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let (sessions, keys) = repo.revoke_everything(creds.user.id, Utc::now()).await?;
    repo.close().await;
    Ok(Said {
        text: format!(
            "{}: {sessions} sessions ended, {keys} API keys revoked",
            creds.user.username
        ),
        json: json!({"username": creds.user.username, "sessions_ended": sessions, "api_keys_revoked": keys}),
    })
}

/// `sessions revoke --user NAME`: every session of the user (its API keys stay).
pub async fn revoke_sessions(config: &Config, name: &str) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let ended = repo
        .revoke_user_sessions(
            creds.user.id,
            "revoked_by_operator",
            Utc::now(),
            &operator_event(creds.user.id, EventKind::SessionRevoked),
        )
        .await?;
    repo.close().await;
    Ok(Said {
        text: format!(
            "{}: {ended} sessions ended; their access tokens are refused from the next request on",
            creds.user.username
        ),
        json: json!({"username": creds.user.username, "sessions_ended": ended}),
    })
}

/// `users mfa-off NAME`: turns the user's TOTP off without a code, for an owner who lost
/// both the app and the recovery codes (recorded as `mfa_disabled`).
pub async fn mfa_off(config: &Config, name: &str) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    let removed = repo
        .remove_totp(
            creds.user.id,
            &operator_event(creds.user.id, EventKind::MfaDisabled),
        )
        .await?;
    repo.close().await;
    let user = &creds.user.username;
    Ok(Said {
        text: if removed {
            format!("{user}: TOTP off, recovery codes deleted; the password alone logs in")
        } else {
            format!("{user}: TOTP was not on")
        },
        json: json!({"username": user, "totp_was_on": removed}),
    })
}

/// `keys list`: each stored signing key, the current one first, with when it was made and
/// retired.
pub async fn list_keys(config: &Config) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let keys = repo.signing_keys().await;
    repo.close().await;
    let keys = keys?;
    let lines: Vec<String> = keys
        .iter()
        .map(|k| {
            let state = match k.retired_at {
                _ if k.active => "current".to_owned(),
                Some(at) => format!("retired {}", rfc3339(at)),
                None => "retired".to_owned(),
            };
            format!(
                "{} {} created {} {state}",
                k.kid,
                k.algorithm,
                rfc3339(k.created_at)
            )
        })
        .collect();
    let json = keys
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "algorithm": k.algorithm,
                "created_at": rfc3339(k.created_at),
                "retired_at": k.retired_at.map(rfc3339),
                "current": k.active,
            })
        })
        .collect();
    Ok(Said {
        text: lines.join("\n"),
        json: Value::Array(json),
    })
}

/// `users delete NAME`: the user and everything of it.
pub async fn delete(config: &Config, name: &str) -> anyhow::Result<Said> {
    let repo = open(config).await?;
    let creds = find(&repo, name).await?;
    repo.delete_user(creds.user.id).await?;
    repo.close().await;
    Ok(Said {
        text: format!(
            "{} deleted, with its sessions, tokens, API keys and second factor",
            creds.user.username
        ),
        json: json!({"username": creds.user.username, "deleted": true}),
    })
}
