//! API keys: created once, listed without the key, revoked at once, usable wherever an access
//! token is except where credentials are managed.

use std::time::Duration;

use reqwest::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

async fn me_with_header(app: &TestApp, key: &str) -> Response {
    app.client
        .get(app.url("/users/me"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// A session of a new user and one API key of it: (username, access token, key object).
async fn user_with_key(app: &TestApp) -> (String, String, Value) {
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let r = app
        .create_api_key(&access, &json!({"name": "deploy script"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (name, access, r.json().await.unwrap())
}

/// The CRC-32 of `text` in 6 base62 digits, written out here from the contract's words.
fn contract_checksum(text: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc: u32 = !0;
    for byte in text.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut n = !crc;
    let mut digits = vec![b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits).unwrap()
}

#[tokio::test]
async fn a_key_is_shown_once_in_the_contract_format_and_stored_only_as_a_hash() {
    let app = spawn_app().await;
    let (name, access, created) = user_with_key(&app).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("authd_"), "{key}");
    assert_eq!(key.len(), 6 + 43 + 6);
    assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let (body, sum) = key.split_at(key.len() - 6);
    assert_eq!(sum, contract_checksum(body));
    assert_eq!(created["name"], "deploy script");
    assert_eq!(created["prefix"], &key[..12]);
    assert!(created["expires_at"].is_null());

    // Listed without the key.
    let list: Value = app.api_keys(&access).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], created["id"]);
    assert!(list[0].get("key").is_none());
    assert!(!list.to_string().contains(&key[12..]));

    // Both headers authenticate as the same user.
    for r in [app.me(key).await, me_with_header(&app, key).await] {
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["username"], name);
    }
    let stored = app
        .db
        .query_column::<Vec<u8>>("SELECT key_hash FROM api_keys")
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0]
        .windows(8)
        .any(|w| key.as_bytes().windows(8).any(|k| k == w)));

    // Its use is recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list: Value = app.api_keys(&access).await.json().await.unwrap();
    assert!(list[0]["last_used_at"].is_string(), "{list}");
}

#[tokio::test]
async fn a_revoked_expired_or_mistyped_key_is_refused() {
    let app = spawn_app().await;
    let (_, access, created) = user_with_key(&app).await;
    let key = created["key"].as_str().unwrap().to_owned();

    // A typo: the checksum fails; same 401 as any bad token.
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let r = app.me(&typo).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // A well-formed key nobody was given.
    let body = format!("authd_{}", "a".repeat(43));
    let forged = format!("{body}{}", contract_checksum(&body));
    assert_eq!(app.me(&forged).await.status(), StatusCode::UNAUTHORIZED);

    // Revoked: refused on the very next request.
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.revoke_api_key(&access, id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.me(&key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.revoke_api_key(&access, id).await.status(),
        StatusCode::NOT_FOUND
    );
    let list: Value = app.api_keys(&access).await.json().await.unwrap();
    assert_eq!(list, json!([]));

    // Expired: refused like a revoked one.
    let r = app
        .create_api_key(&access, &json!({"name": "short", "expires_in_days": 1}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let short: Value = r.json().await.unwrap();
    let short_key = short["key"].as_str().unwrap();
    assert!(short["expires_at"].is_string());
    assert_eq!(app.me(short_key).await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(app.me(short_key).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_cannot_manage_credentials_and_users_cannot_touch_each_others_keys() {
    let app = spawn_app().await;
    let (_, access, created) = user_with_key(&app).await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let r = app
        .create_api_key(key, &json!({"name": "from a key"}))
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(app.api_keys(key).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(
        app.revoke_api_key(key, id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        app.logout_all(key).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(app.logout_bearer(key).await.status(), StatusCode::FORBIDDEN);

    // Another user cannot see or revoke it, and learns nothing from trying.
    let (_, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);
    assert_eq!(
        app.revoke_api_key(&other_access, id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.revoke_api_key(&other_access, "not-a-uuid")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let list: Value = app.api_keys(&other_access).await.json().await.unwrap();
    assert_eq!(list, json!([]));
    assert_eq!(
        app.me(key).await.status(),
        StatusCode::OK,
        "still the owner's"
    );

    // Bad bodies are 422s naming the field.
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(65)}), "name"),
        (
            json!({"name": "k", "expires_in_days": 0}),
            "expires_in_days",
        ),
        (
            json!({"name": "k", "expires_in_days": 3651}),
            "expires_in_days",
        ),
        (
            json!({"name": "k", "expires_in_days": "7"}),
            "expires_in_days",
        ),
    ] {
        let r = app.create_api_key(&access, &body).await;
        let error = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error["fields"][0]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_every_replica_at_once() {
    let app = spawn_app().await;
    let replica = spawn_app_on(app.db.clone(), &[]).await;
    let (_, access, created) = user_with_key(&app).await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(replica.me(key).await.status(), StatusCode::OK);
    let r = app
        .revoke_api_key(&access, created["id"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(replica.me(key).await.status(), StatusCode::UNAUTHORIZED);
}
