//! Cookie mode for browsers: the refresh token in an HttpOnly cookie, CSRF proof required.

use reqwest::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// The `authd_refresh` value an answer sets (`""` when it deletes it), and its attributes.
fn refresh_cookie(r: &Response) -> Option<(String, String)> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("authd_refresh="))
        .map(|v| {
            let value = v["authd_refresh=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            (value, v.to_owned())
        })
}

async fn cookie_login(app: &TestApp, name: &str) -> Response {
    app.client
        .post(app.url("/auth/login?mode=cookie"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

async fn with_cookie(app: &TestApp, path: &str, cookie: &str, csrf: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header(header::COOKIE, format!("authd_refresh={cookie}"));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn cookie_mode_keeps_the_refresh_token_in_a_cookie_and_asks_for_csrf_proof() {
    let app = spawn_app().await;
    let name = unique_name("browser");
    app.register_user(&name).await;
    let r = cookie_login(&app, &name).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let (cookie, attributes) = refresh_cookie(&r).expect("a refresh cookie");
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/auth",
        "Max-Age=1209600",
    ] {
        assert!(attributes.contains(part), "{attributes}");
    }
    assert!(device_cookie(&r).is_some(), "the device cookie too");
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);

    // Without the header, or with another value: 403, and the cookie is not used up.
    let r = with_cookie(&app, "/auth/refresh", &cookie, None).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = with_cookie(&app, "/auth/refresh", &cookie, Some("forged")).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    // With it: a new access token, and the cookie rotates; the CSRF token stays.
    let r = with_cookie(&app, "/auth/refresh", &cookie, Some(&csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (rotated, _) = refresh_cookie(&r).unwrap();
    assert_ne!(rotated, cookie);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["csrf_token"], csrf.as_str());

    // Another session's CSRF token does not fit this one.
    let other: Value = cookie_login(&app, &name).await.json().await.unwrap();
    let other_csrf = other["csrf_token"].as_str().unwrap();
    assert_ne!(other_csrf, csrf);
    let r = with_cookie(&app, "/auth/refresh", &rotated, Some(other_csrf)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Logout: the CSRF proof again, then 204 and the cookie deleted; the session is over.
    let r = with_cookie(&app, "/auth/logout", &rotated, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = with_cookie(&app, "/auth/logout", &rotated, Some(&csrf)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (deleted, attributes) = refresh_cookie(&r).unwrap();
    assert_eq!(deleted, "");
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
    let r = with_cookie(&app, "/auth/refresh", &rotated, Some(&csrf)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_mode_is_unchanged_and_a_bad_mode_is_refused() {
    let app = spawn_app().await;
    let name = unique_name("plain");
    app.register_user(&name).await;
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert!(refresh_cookie(&r).is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["refresh_token"].is_string());
    assert!(body.get("csrf_token").is_none());
    let r = app
        .client
        .post(app.url("/auth/login?mode=sideways"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A refresh without a body or a cookie says what is missing.
    let r = app
        .client
        .post(app.url("/auth/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
