//! The TOTP second factor: enrolment and confirmation, the second step of a login with a
//! TOTP or recovery code, replays (one after the other and at once), throttling, turning it
//! off, and the secret at rest.

use std::time::Duration;

use authd::{auth::sealing::MasterKey, clock::Clock};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

/// The code an authenticator app shows for `secret` (base32) at `unix_secs`, computed with
/// the RFC 6238 parameters of the contract.
pub fn code_at(secret: &str, unix_secs: i64) -> String {
    let bytes = totp_rs::Secret::try_from_base32(secret)
        .unwrap()
        .as_bytes()
        .to_vec();
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes)
        .build()
        .unwrap()
        .generate(unix_secs as u64)
        .to_string()
}

/// The code of the app's clock now.
pub fn code_now(app: &TestApp, secret: &str) -> String {
    code_at(secret, app.clock.now().timestamp())
}

/// A user with TOTP on: (username, access token, base32 secret, recovery codes). The clock
/// is moved on a step, so that the next code is not the confirming one.
async fn user_with_totp(app: &TestApp) -> (String, String, String, Vec<String>) {
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let r = app.enrol_totp(&access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let secret = r.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.confirm_totp(&access, &code_now(app, &secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let codes: Vec<String> =
        serde_json::from_value(r.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    app.clock.advance(Duration::from_secs(30));
    (name, access, secret, codes)
}

/// Logs in with the password and returns the `mfa_token` of the `401 mfa_required`.
async fn mfa_token(app: &TestApp, name: &str) -> String {
    let r = app
        .token(&[("username", name), ("password", PASSWORD)])
        .await;
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let body = assert_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    body["mfa_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn enrolment_is_active_only_once_confirmed_and_returns_ten_recovery_codes() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);

    let r = app.enrol_totp(&access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let e: Value = r.json().await.unwrap();
    let secret = e["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("otpauth://totp/authd:{name}?")),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));

    // Not yet confirmed: the password alone still logs in.
    app.login(&name, PASSWORD).await;
    let r = app
        .get_with_authorization("/users/me/mfa", format!("Bearer {access}").as_bytes())
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["totp_enabled"], false);

    // A wrong code, and one that is no code at all.
    let wrong = format!(
        "{:06}",
        (code_now(&app, secret).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    assert_error(
        app.confirm_totp(&access, &wrong).await,
        StatusCode::UNAUTHORIZED,
        "invalid_code",
    )
    .await;
    let body = assert_error(
        app.confirm_totp(&access, "12ab").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["fields"][0]["field"], "code");

    let r = app.confirm_totp(&access, &code_now(&app, secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let codes: Vec<String> =
        serde_json::from_value(r.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);

    // Stored only as hashes.
    let stored = app
        .db
        .query_column::<Vec<u8>>("SELECT code_hash FROM recovery_codes")
        .await;
    assert_eq!(stored.len(), 10);
    for code in &codes {
        assert!(stored
            .iter()
            .all(|h| !h.windows(code.len()).any(|w| w == code.as_bytes())));
    }

    // On now: a new enrolment is refused, the state says so, and the password alone is not enough.
    assert_error(
        app.enrol_totp(&access).await,
        StatusCode::CONFLICT,
        "mfa_already_enabled",
    )
    .await;
    let r = app
        .get_with_authorization("/users/me/mfa", format!("Bearer {access}").as_bytes())
        .await;
    let state: Value = r.json().await.unwrap();
    assert_eq!(
        state,
        json!({"totp_enabled": true, "recovery_codes_left": 10})
    );
    mfa_token(&app, &name).await;
    app.stop().await;
}

#[tokio::test]
async fn a_login_with_totp_needs_a_code_and_each_code_and_token_works_once() {
    let app = spawn_app().await;
    let (name, _, secret, _) = user_with_totp(&app).await;

    // Both password endpoints answer mfa_required; no session is opened yet.
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    let body = assert_error(r, StatusCode::UNAUTHORIZED, "mfa_required").await;
    assert!(body.get("access_token").is_none());
    let token = mfa_token(&app, &name).await;
    assert_ne!(token, body["mfa_token"]);

    let code = code_now(&app, &secret);
    let r = app.second_step(&token, &code).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert!(device_cookie(&r).is_some());
    let pair: Value = r.json().await.unwrap();
    let (access, refresh) = tokens(&pair);
    let me: Value = app.me(&access).await.json().await.unwrap();
    assert_eq!(me["username"], name);
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);

    // The same mfa_token again: used up.
    let r = app.second_step(&token, &code_now(&app, &secret)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_grant").await;

    // The same code with a new token: a replay.
    let token = mfa_token(&app, &name).await;
    assert_error(
        app.second_step(&token, &code).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    // The code of the step before an accepted one is refused too (steps only move forward).
    let earlier = code_at(&secret, app.clock.now().timestamp() - 30);
    assert_error(
        app.second_step(&token, &earlier).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    // The next step's code, with the token a wrong code did not use up.
    app.clock.advance(Duration::from_secs(30));
    let r = app.second_step(&token, &code_now(&app, &secret)).await;
    assert_eq!(r.status(), StatusCode::OK);

    // An expired token.
    let token = mfa_token(&app, &name).await;
    app.clock.advance(Duration::from_secs(5 * 60 + 30));
    assert_error(
        app.second_step(&token, &code_now(&app, &secret)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    // Garbage and missing fields.
    assert_error(
        app.second_step("not-a-token", "123456").await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    let r = app.post_json("/auth/mfa", &json!({"code": "123456"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    let events = app
        .get_with_authorization("/users/me/events", format!("Bearer {access}").as_bytes())
        .await;
    let types: Vec<String> = events
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.contains(&"mfa_challenged".to_owned()), "{types:?}");
    assert!(types.contains(&"mfa_enabled".to_owned()), "{types:?}");
    app.stop().await;
}

#[tokio::test]
async fn one_code_sent_twice_at_once_is_accepted_once() {
    let app = spawn_app().await;
    let (name, _, secret, _) = user_with_totp(&app).await;
    for _ in 0..3 {
        let (a, b) = (mfa_token(&app, &name).await, mfa_token(&app, &name).await);
        let code = code_now(&app, &secret);
        let (ra, rb) = tokio::join!(app.second_step(&a, &code), app.second_step(&b, &code));
        let mut statuses = [ra.status(), rb.status()];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
        app.clock.advance(Duration::from_secs(30));
    }
    // One token sent twice at once opens one session.
    let token = mfa_token(&app, &name).await;
    let code = code_now(&app, &secret);
    let (ra, rb) = tokio::join!(
        app.second_step(&token, &code),
        app.second_step(&token, &code)
    );
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
    app.stop().await;
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let app = spawn_app().await;
    let (name, access, _, codes) = user_with_totp(&app).await;
    let token = mfa_token(&app, &name).await;
    // Read without regard to case and dashes, as people type them.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let r = app.second_step(&token, &typed).await;
    assert_eq!(r.status(), StatusCode::OK);

    let token = mfa_token(&app, &name).await;
    assert_error(
        app.second_step(&token, &codes[0]).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        app.second_step(&token, &codes[1]).await.status(),
        StatusCode::OK
    );
    let r = app
        .get_with_authorization("/users/me/mfa", format!("Bearer {access}").as_bytes())
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["recovery_codes_left"], 8);
    app.stop().await;
}

#[tokio::test]
async fn wrong_codes_count_toward_the_account_throttle() {
    let app = spawn_app().await;
    let (name, _, secret, _) = user_with_totp(&app).await;
    // The password attempt is counted (and stays so until a code is accepted), then four
    // wrong codes: the fifth failure locks the name.
    let token = mfa_token(&app, &name).await;
    for _ in 0..4 {
        let r = app.second_step(&token, "000000").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    }
    let r = app.second_step(&token, &code_now(&app, &secret)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let r = app
        .token(&[("username", &name), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // After the lock, a right code goes through and clears the count.
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(
        app.second_step(&token, &code_now(&app, &secret))
            .await
            .status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(30));
    mfa_token(&app, &name).await;
    app.stop().await;
}

#[tokio::test]
async fn turning_totp_off_needs_a_session_and_a_code() {
    let app = spawn_app().await;
    let (name, access, secret, codes) = user_with_totp(&app).await;

    // An API key may not manage the factor.
    let key = app.api_key(&access, "ci").await;
    for r in [
        app.enrol_totp(&key).await,
        app.confirm_totp(&key, "123456").await,
        app.disable_totp(&key, &code_now(&app, &secret)).await,
    ] {
        assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Without a session at all.
    let r = app
        .client
        .delete(app.url("/users/me/mfa/totp"))
        .json(&json!({"code": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    assert_error(
        app.disable_totp(&access, "000000").await,
        StatusCode::UNAUTHORIZED,
        "invalid_code",
    )
    .await;
    assert_error(
        app.disable_totp(&access, "aaaa-bbbb-cccc-dddd").await,
        StatusCode::UNAUTHORIZED,
        "invalid_code",
    )
    .await;
    assert_eq!(
        app.disable_totp(&access, &codes[3]).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        app.disable_totp(&access, &codes[4]).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.db
            .query_column::<Vec<u8>>("SELECT code_hash FROM recovery_codes")
            .await
            .len(),
        0,
        "the recovery codes went with the factor"
    );

    // The password alone logs in again, and TOTP can be enrolled anew.
    app.login(&name, PASSWORD).await;
    assert_eq!(app.enrol_totp(&access).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn deleting_the_account_removes_its_factor_and_challenges() {
    let app = spawn_app().await;
    let (name, access, _, _) = user_with_totp(&app).await;
    mfa_token(&app, &name).await;
    let r = app.delete_me(&access, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for table in ["totp_factors", "recovery_codes", "mfa_challenges"] {
        let left = app
            .db
            .query_column::<i64>(&format!("SELECT COUNT(*) FROM {table}"))
            .await;
        assert_eq!(left, [0], "{table}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_totp_secret_is_sealed_at_rest_and_survives_a_rekey() {
    let db = TestDb::new().await;
    let app = spawn_app_on(db.clone(), &[]).await;
    let (name, _, secret, _) = user_with_totp(&app).await;
    app.stop().await;
    let raw = totp_rs::Secret::try_from_base32(&secret)
        .unwrap()
        .as_bytes()
        .to_vec();
    let stored = || async {
        db.query_column::<Vec<u8>>("SELECT secret FROM totp_factors")
            .await
    };
    assert_eq!(
        stored().await,
        std::slice::from_ref(&raw),
        "in clear without a master key"
    );

    // A master key seals it at the next start.
    let key_a = MasterKey::generate_text();
    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_a.as_str())]).await;
    app.stop().await;
    let sealed = stored().await;
    assert!(!sealed[0].windows(raw.len()).any(|w| w == raw.as_slice()));
    assert_eq!(
        db.query_column::<bool>("SELECT sealed FROM totp_factors")
            .await,
        [true]
    );

    // Moved to another master key, it still gives the same codes.
    let dir = tempfile::tempdir().unwrap();
    let key_b = MasterKey::generate_text();
    let file = dir.path().join("new.key");
    std::fs::write(&file, &key_b).unwrap();
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
        .args(["keys", "rekey", "--new-key-file"])
        .arg(&file)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("AUTHD_MASTER_KEY", &key_a)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("7 stored secrets"));
    assert_ne!(stored().await, sealed);

    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_b.as_str())]).await;
    // A new clock starts at the real time, past the step accepted above.
    app.clock.advance(Duration::from_secs(60));
    let token = mfa_token(&app, &name).await;
    let r = app.second_step(&token, &code_now(&app, &secret)).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_turns_totp_off_from_the_cli() {
    let app = spawn_app().await;
    let (name, access, _, _) = user_with_totp(&app).await;
    let show = authd_ok(&app.db.url, &["users", "show", &name]);
    assert!(show.contains("TOTP: on"), "{show}");

    let said = authd_ok(&app.db.url, &["users", "mfa-off", &name]);
    assert!(said.contains("TOTP off"), "{said}");
    app.login(&name, PASSWORD).await;
    let said = authd_ok(&app.db.url, &["users", "mfa-off", &name]);
    assert!(said.contains("was not on"), "{said}");

    let events = app
        .get_with_authorization("/users/me/events", format!("Bearer {access}").as_bytes())
        .await;
    let first: Vec<Value> = events.json().await.unwrap();
    assert!(first.iter().any(|e| e["type"] == "mfa_disabled"));
    app.stop().await;
}
