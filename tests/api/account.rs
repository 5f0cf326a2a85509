//! Self-service: one's own sessions.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_user_lists_their_live_sessions_and_ends_one_of_them() {
    let app = spawn_app().await;
    let (name, first) = app.new_session().await;
    let (first_access, _) = tokens(&first);
    let second = app
        .client
        .post(app.url("/token"))
        .header(header::USER_AGENT, "phone/1.0")
        .form(&[("username", name.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let (second_access, _) = tokens(&second);
    let (_, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);

    let list = app
        .sessions(&first_access)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let phone = list
        .iter()
        .find(|s| s["user_agent"] == "phone/1.0")
        .unwrap();
    assert_eq!(phone["current"], false);
    assert_eq!(phone["ip"], "127.0.0.1");
    assert!(phone["created_at"].is_string() && phone["last_used_at"].is_string());
    let phone_id = phone["id"].as_str().unwrap();

    // Another user can neither see nor end it.
    assert_eq!(
        app.sessions(&other_access)
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = app.end_session(&other_access, phone_id).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&second_access).await.status(), StatusCode::OK);

    // Its owner ends it: its tokens stop working at once; the caller's session lives on.
    let r = app.end_session(&first_access, phone_id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me(&second_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&first_access).await.status(), StatusCode::OK);
    assert_eq!(
        app.sessions(&first_access)
            .await
            .json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.end_session(&first_access, phone_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.end_session(&first_access, "nope").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_api_key_may_list_sessions_but_not_end_them() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let key = &app.api_key(&access, "monitor").await;
    let list = app.sessions(key).await.json::<Value>().await.unwrap();
    assert_eq!(list[0]["current"], false, "a key is no session");
    let id = list[0]["id"].as_str().unwrap();
    let r = app.end_session(key, id).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn patch_me_changes_or_clears_the_email_and_name() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);

    let r = app
        .patch_me(
            &access,
            &json!({"email": "New.Address@Example.com", "full_name": "Jane Roe"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["email"], "New.Address@Example.com");
    assert_eq!(user["full_name"], "Jane Roe");
    // Absent leaves a field alone; null clears it.
    let user: Value = app
        .patch_me(&access, &json!({"full_name": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["email"], "New.Address@Example.com");
    assert!(user["full_name"].is_null());
    let me: Value = app.me(&access).await.json().await.unwrap();
    assert!(me["full_name"].is_null());

    // Another account's address, in any case, is taken; a bad one is a 422.
    let (other_name, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);
    let r = app
        .patch_me(&other_access, &json!({"email": "new.address@example.COM"}))
        .await;
    assert_error(r, StatusCode::CONFLICT, "email_taken").await;
    let r = app
        .patch_me(&access, &json!({"email": "not an address"}))
        .await;
    let error = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["fields"][0]["field"], "email");
    assert!(!other_name.is_empty());
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_keeps_this_one() {
    let app = spawn_app().await;
    let (name, first) = app.new_session().await;
    let (access, refresh) = tokens(&first);
    let second = app.login(&name, PASSWORD).await;
    let (second_access, second_refresh) = tokens(&second);

    assert_error(
        app.change_password(&access, "wrong-password-1", "a brand new passphrase 9")
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_password",
    )
    .await;
    let r = app.change_password(&access, PASSWORD, "short").await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        app.me(&second_access).await.status(),
        StatusCode::OK,
        "nothing changed yet"
    );

    let r = app
        .change_password(&access, PASSWORD, "a brand new passphrase 9")
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me(&second_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&second_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    let old = app
        .token(&[("username", name.as_str()), ("password", PASSWORD)])
        .await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    app.login(&name, "a brand new passphrase 9").await;

    // Wrong current passwords count toward the name's lock.
    for _ in 0..5 {
        app.change_password(&access, "wrong-password-1", "another new passphrase 7")
            .await;
    }
    assert_eq!(
        app.change_password(&access, "wrong-password-1", "x")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn deleting_the_account_takes_its_password_and_removes_everything_of_it() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    let key = app.api_key(&access, "k").await;
    let (_, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);

    assert_error(
        app.delete_me(&access, "wrong-password-1").await,
        StatusCode::UNAUTHORIZED,
        "invalid_password",
    )
    .await;
    assert_error(
        app.delete_me(&key, PASSWORD).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete_me(&access, PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let login = app
        .token(&[("username", name.as_str()), ("password", PASSWORD)])
        .await;
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    let count = |sql: &'static str| app.db.query_column::<i64>(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM users").await,
        [1],
        "the other user stays"
    );
    assert_eq!(count("SELECT COUNT(*) FROM api_keys").await, [0]);
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, [1]);
    assert_eq!(app.me(&other_access).await.status(), StatusCode::OK);
    // The name is free again.
    assert_eq!(
        app.register(&json!({"username": name, "password": PASSWORD}))
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_audit_trail_records_each_change_newest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    // A failed login, a second session, a reuse of its refresh token, a key made and revoked,
    // the second session ended, a password change.
    let r = app
        .client
        .post(app.url("/token"))
        .header(header::USER_AGENT, "attacker/0.1")
        .form(&[
            ("username", name.as_str()),
            ("password", "wrong-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let second = app.login(&name, PASSWORD).await;
    let (_, second_refresh) = tokens(&second);
    assert_eq!(app.refresh(&second_refresh).await.status(), StatusCode::OK);
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(
        app.refresh(&second_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let created: Value = app
        .create_api_key(&access, &json!({"name": "k"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let r = app.revoke_api_key(&access, id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .change_password(&access, PASSWORD, "a brand new passphrase 9")
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.logout_bearer(&access).await.status(),
        StatusCode::NO_CONTENT
    );

    // The access token is gone; a new session reads the trail.
    let fresh = app.login(&name, "a brand new passphrase 9").await;
    let (fresh_access, _) = tokens(&fresh);
    let all: Value = app.events(&fresh_access, "").await.json().await.unwrap();
    let types: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "login_succeeded",
            "logout",
            "password_changed",
            "api_key_revoked",
            "api_key_created",
            "refresh_reuse_detected",
            "login_succeeded",
            "login_failed",
            "login_succeeded",
        ]
    );
    let failed = &all[7];
    assert_eq!(failed["ip"], "127.0.0.1");
    assert_eq!(failed["user_agent"], "attacker/0.1");
    assert!(failed["at"].is_string() && failed["id"].is_string());

    // Pages: three, then the next three below the last id, and so on.
    let page: Value = app
        .events(&fresh_access, "?limit=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.as_array().unwrap().len(), 3);
    assert_eq!(page[0], all[0]);
    let last = page[2]["id"].as_str().unwrap();
    let next: Value = app
        .events(&fresh_access, &format!("?limit=3&before={last}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next[0], all[3]);
    for bad in ["?limit=0", "?limit=101", "?limit=x", "?before=nope"] {
        let r = app.events(&fresh_access, bad).await;
        assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }

    // Another user sees none of it.
    let (_, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);
    let theirs: Value = app.events(&other_access, "").await.json().await.unwrap();
    assert_eq!(theirs.as_array().unwrap().len(), 1, "only their own login");

    // Events older than the retention (90 days) go at housekeeping.
    app.clock
        .advance(std::time::Duration::from_secs(91 * 24 * 3600));
    assert!(app.auth.housekeeping().await.unwrap().events >= 10);
}
