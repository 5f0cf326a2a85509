//! `examples/resource_server.rs` against a running authd: it verifies access tokens offline
//! from the JWK set, follows a key rotation, refuses a token of another issuer, and does not
//! let made-up key ids hammer authd.

use std::sync::Arc;

use reqwest::StatusCode;

use crate::helpers::*;

/// The example's refetch floor, shortened for the test.
const FLOOR: std::time::Duration = std::time::Duration::from_millis(500);

#[allow(dead_code)]
#[path = "../../examples/resource_server.rs"]
mod example;

/// The example's service on a random port, trusting `app`; its URL and its key cache.
async fn serve_example(app: &TestApp) -> (String, Arc<example::Keys>) {
    let keys = Arc::new(example::Keys::new(example::Settings {
        authd_url: app.base.clone(),
        issuer: "authd".into(),
        audience: "authd".into(),
        refetch_floor: FLOOR,
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = example::app(keys.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, keys)
}

async fn hello(app: &TestApp, url: &str, token: &str) -> StatusCode {
    app.client
        .get(format!("{url}/hello"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_resource_server_verifies_tokens_offline_and_follows_a_rotation() {
    let app = spawn_app().await;
    let (url, keys) = serve_example(&app).await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);

    let r = app
        .client
        .get(format!("{url}/hello"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["hello"], name.as_str());
    assert_eq!(hello(&app, &url, &access).await, StatusCode::OK);
    assert_eq!(keys.fetches(), 1, "the keys are cached");

    // No token, a tampered one, one of another issuer.
    let r = app.client.get(format!("{url}/hello")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let mut tampered = access.clone();
    tampered.pop();
    tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(hello(&app, &url, &tampered).await, StatusCode::UNAUTHORIZED);
    let other = spawn_app_with(&[("AUTHD_ISSUER", "https://someone-else.example")]).await;
    let (_, pair) = other.new_session().await;
    let (foreign, _) = tokens(&pair);
    // Its kid is unknown here: one fetch, if the floor has passed since the last.
    let before = keys.fetches();
    assert_eq!(hello(&app, &url, &foreign).await, StatusCode::UNAUTHORIZED);
    assert!(keys.fetches() <= before + 1, "{} fetches", keys.fetches());
    other.stop().await;

    // authd rotates its key: new tokens name a kid the cache has never seen, and pass.
    authd_ok(&app.db.url, &["keys", "rotate"]);
    assert!(app.auth.reload_keys().await.unwrap());
    let before = keys.fetches();
    let pair = app.login(&name, PASSWORD).await;
    let (rotated, _) = tokens(&pair);
    assert_ne!(jwt_part(&rotated, 0)["kid"], jwt_part(&access, 0)["kid"]);
    // (The first fetch was under the refetch floor ago: wait it out, as in life.)
    tokio::time::sleep(FLOOR).await;
    assert_eq!(hello(&app, &url, &rotated).await, StatusCode::OK);
    assert_eq!(
        hello(&app, &url, &access).await,
        StatusCode::OK,
        "the old key still verifies"
    );
    let fetched = keys.fetches();
    assert_eq!(fetched, before + 1, "one fetch for the new kid");

    // A flood of made-up kids costs at most one fetch per floor.
    for i in 0..20 {
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"made-up-{i}"}}"#),
        );
        let forged = format!("{header}.{}", access.split_once('.').unwrap().1);
        assert_eq!(hello(&app, &url, &forged).await, StatusCode::UNAUTHORIZED);
    }
    assert!(keys.fetches() <= fetched + 1, "{} fetches", keys.fetches());
    app.stop().await;
}
