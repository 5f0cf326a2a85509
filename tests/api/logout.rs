use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn bearer_logout_ends_the_session_at_once() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    assert_eq!(
        app.logout_bearer(&access).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = app.me(&access).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the unexpired access token is refused"
    );
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.logout_bearer(&access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refresh_token_logout_ends_the_session() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    assert_eq!(
        app.logout_refresh(&refresh).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.logout_refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_leaves_other_sessions_alone() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let other = app.login(&name, PASSWORD).await;
    app.logout_bearer(&tokens(&pair).0).await;
    assert_eq!(app.me(&tokens(&other).0).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_without_a_credential_is_401() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .logout_refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.logout_bearer("not.a.token").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .post(app.url("/auth/logout"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "malformed_body").await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = spawn_app().await;
    let (name, first) = app.new_session().await;
    let second = app.login(&name, PASSWORD).await;
    let (_, bystander) = app.new_session().await;

    assert_eq!(
        app.logout_all(&tokens(&first).0).await.status(),
        StatusCode::NO_CONTENT
    );
    for pair in [&first, &second] {
        let (access, refresh) = tokens(pair);
        assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.refresh(&refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(app.me(&tokens(&bystander).0).await.status(), StatusCode::OK);
    // A new login works.
    let again = app.login(&name, PASSWORD).await;
    assert_eq!(app.me(&tokens(&again).0).await.status(), StatusCode::OK);
    let r = app
        .client
        .post(app.url("/auth/logout-all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_reaches_every_replica_on_the_same_database() {
    let a = spawn_app().await;
    let b = spawn_app_on(a.db.clone(), &[]).await;
    let (name, pair) = a.new_session().await;
    let (access, refresh) = tokens(&pair);
    // Replicas share the signing key: a token from A works on B.
    assert_eq!(b.me(&access).await.status(), StatusCode::OK);
    let me: Value = b.me(&access).await.json().await.unwrap();
    assert_eq!(me["username"], json!(name));
    // Refresh on B, use on A.
    let next: Value = b.refresh(&refresh).await.json().await.unwrap();
    assert_eq!(a.me(&tokens(&next).0).await.status(), StatusCode::OK);
    // Logout on B; A refuses the old access tokens on the next request.
    assert_eq!(
        b.logout_bearer(&tokens(&next).0).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(a.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        a.me(&tokens(&next).0).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn concurrent_checks_each_get_their_own_sessions_answer() {
    // Many checks in flight at once share database queries (batched on Postgres); each must
    // still get the answer for its own session and user, live or ended.
    let app = spawn_app().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (name, pair) = app.new_session().await;
        let (access, _) = tokens(&pair);
        let ended = tokens(&app.login(&name, PASSWORD).await).0;
        assert_eq!(
            app.logout_bearer(&ended).await.status(),
            StatusCode::NO_CONTENT
        );
        sessions.push((name.clone(), access, true));
        sessions.push((name, ended, false));
    }
    let checks = (0..60).map(|i| {
        let (name, access, live) = &sessions[i % sessions.len()];
        let app = &app;
        async move {
            let r = app.me(access).await;
            if *live {
                assert_eq!(r.status(), StatusCode::OK);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["username"], json!(name));
            } else {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            }
        }
    });
    futures::future::join_all(checks).await;
}
