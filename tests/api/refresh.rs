use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn ok_pair(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

async fn assert_refused(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_rotates_the_token_and_issues_a_working_access_token() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    let next = ok_pair(app.refresh(&refresh).await).await;
    let (new_access, new_refresh) = tokens(&next);
    assert_ne!(new_refresh, refresh);
    assert_ne!(new_access, access);
    assert_eq!(next["token_type"], "bearer");
    assert_eq!(
        jwt_part(&new_access, 1)["sid"],
        jwt_part(&access, 1)["sid"],
        "same session"
    );
    let me: Value = app.me(&new_access).await.json().await.unwrap();
    assert_eq!(me["username"], name.as_str());
    // The chain goes on.
    let third = ok_pair(app.refresh(&new_refresh).await).await;
    assert_ne!(tokens(&third).1, new_refresh);
}

#[tokio::test]
async fn the_token_endpoint_refresh_grant_rotates_and_refuses_with_400() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (_, refresh) = tokens(&pair);
    let next = ok_pair(
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await,
    )
    .await;
    assert_ne!(tokens(&next).1, refresh);
    let r = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-real-token"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens_are_invalid_grant() {
    let app = spawn_app().await;
    for bad in [
        "",
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &"é".repeat(50),
    ] {
        assert_refused(app.refresh(bad).await).await;
    }
    let r = app.post_json("/auth/refresh", &serde_json::json!({})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn reuse_outside_the_grace_window_revokes_the_whole_session() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_GRACE_SECS", "0")]).await;
    let (_, pair) = app.new_session().await;
    let (_, first) = tokens(&pair);
    let second = ok_pair(app.refresh(&first).await).await;
    let (second_access, second_refresh) = tokens(&second);

    assert_refused(app.refresh(&first).await).await; // reuse: the session is revoked...
    assert_refused(app.refresh(&second_refresh).await).await; // ...the thief's token too...
    assert_eq!(
        app.me(&second_access).await.status(),
        StatusCode::UNAUTHORIZED
    ); // ...and its access tokens.
}

#[tokio::test]
async fn a_repeat_within_the_grace_window_returns_the_current_token() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (_, first) = tokens(&pair);
    let second = ok_pair(app.refresh(&first).await).await;
    let again = ok_pair(app.refresh(&first).await).await;
    assert_eq!(
        tokens(&again).1,
        tokens(&second).1,
        "the same current refresh token"
    );
    assert_eq!(app.me(&tokens(&again).0).await.status(), StatusCode::OK);
    // The session goes on normally from the current token.
    ok_pair(app.refresh(&tokens(&second).1).await).await;
}

#[tokio::test]
async fn an_older_ancestor_is_reuse_even_within_the_grace_window() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (_, first) = tokens(&pair);
    let second = ok_pair(app.refresh(&first).await).await;
    let third = ok_pair(app.refresh(&tokens(&second).1).await).await;
    assert_refused(app.refresh(&first).await).await; // grandparent of the current token
    assert_refused(app.refresh(&tokens(&third).1).await).await;
    assert_eq!(
        app.me(&tokens(&third).0).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_grace_window_ends() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_GRACE_SECS", "1")]).await;
    let (_, pair) = app.new_session().await;
    let (_, first) = tokens(&pair);
    let second = ok_pair(app.refresh(&first).await).await;
    app.clock.advance(Duration::from_millis(1100));
    assert_refused(app.refresh(&first).await).await;
    assert_refused(app.refresh(&tokens(&second).1).await).await;
}

#[tokio::test]
async fn twenty_concurrent_refreshes_yield_one_new_token_and_a_usable_session() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (_, refresh) = tokens(&pair);
    let responses = join_all((0..20).map(|_| app.refresh(&refresh))).await;
    let mut new_tokens = HashSet::new();
    for r in responses {
        assert_eq!(r.status(), StatusCode::OK, "every tab gets tokens");
        new_tokens.insert(tokens(&r.json::<Value>().await.unwrap()).1);
    }
    assert_eq!(
        new_tokens.len(),
        1,
        "exactly one distinct new refresh token"
    );
    let current = new_tokens.into_iter().next().unwrap();
    let next = ok_pair(app.refresh(&current).await).await;
    assert_eq!(app.me(&tokens(&next).0).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_grace_at_most_one_concurrent_refresh_succeeds() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_GRACE_SECS", "0")]).await;
    let (_, pair) = app.new_session().await;
    let (_, refresh) = tokens(&pair);
    let responses = join_all((0..20).map(|_| app.refresh(&refresh))).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(ok <= 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    // The losers counted as reuse, so the session is over, winner included.
    for r in responses {
        if r.status() == StatusCode::OK {
            let (access, refresh) = tokens(&r.json::<Value>().await.unwrap());
            assert_refused(app.refresh(&refresh).await).await;
            assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
        }
    }
}

#[tokio::test]
async fn the_idle_timeout_ends_a_session_that_is_not_refreshed() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_TTL_SECS", "1")]).await;
    let (_, pair) = app.new_session().await;
    assert_eq!(pair["refresh_expires_in"], 1);
    app.clock.advance(Duration::from_secs(1));
    assert_refused(app.refresh(&tokens(&pair).1).await).await;
}

#[tokio::test]
async fn the_absolute_lifetime_caps_refresh_and_access_tokens() {
    let app = spawn_app_with(&[("AUTHD_SESSION_MAX_SECS", "3")]).await;
    let (_, pair) = app.new_session().await;
    assert!(pair["expires_in"].as_i64().unwrap() <= 3, "{pair}");
    assert!(pair["refresh_expires_in"].as_i64().unwrap() <= 3, "{pair}");
    app.clock.advance(Duration::from_secs(1));
    let next = ok_pair(app.refresh(&tokens(&pair).1).await).await;
    assert_eq!(next["refresh_expires_in"], 2, "{next}");
    assert_eq!(next["expires_in"], 2, "{next}");
    app.clock.advance(Duration::from_secs(2));
    assert_refused(app.refresh(&tokens(&next).1).await).await;
}

#[tokio::test]
async fn concurrent_refreshes_of_many_sessions_each_rotate_their_own_chain() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_GRACE_SECS", "0")]).await;
    let name = unique_name("many");
    app.register_user(&name).await;
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(tokens(&app.login(&name, PASSWORD).await));
    }
    // Every session's token presented at once, plus one stale duplicate of the first: the
    // rotations share statements, and each must still be decided on its own.
    for round in 0..3 {
        let mut presented: Vec<&str> = sessions.iter().map(|(_, r)| r.as_str()).collect();
        presented.push(presented[0]);
        let answers = join_all(presented.iter().map(|r| app.refresh(r))).await;
        let mut next = Vec::new();
        let mut refused = 0;
        for answer in answers {
            if answer.status() == StatusCode::OK {
                next.push(tokens(&answer.json::<Value>().await.unwrap()));
            } else {
                assert_refused(answer).await;
                refused += 1;
            }
        }
        // With no grace window, one of the two presentations of the first token wins and
        // the other counts as reuse, which ends that session.
        assert_eq!((next.len(), refused), (8, 1), "round {round}");
        let sids: HashSet<Value> = next
            .iter()
            .map(|(a, _)| jwt_part(a, 1)["sid"].clone())
            .collect();
        assert_eq!(sids.len(), 8, "each session answered once");
        let mut live = Vec::new();
        for (access, refresh) in next {
            if app.me(&access).await.status() == StatusCode::OK {
                live.push((access, refresh));
            }
        }
        assert_eq!(live.len(), 7, "only the reused session ended");
        sessions = live;
        sessions.push(tokens(&app.login(&name, PASSWORD).await));
    }
}
