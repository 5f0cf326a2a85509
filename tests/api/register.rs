use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn register_returns_201_and_the_user_object_without_any_password() {
    let app = spawn_app().await;
    let r = app
        .register(&json!({
            "username": "Alice.Smith",
            "password": PASSWORD,
            "email": "alice@example.com",
            "full_name": "Alice Smith"
        }))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user: Value = r.json().await.unwrap();
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{user}");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    assert_eq!(user["username"], "Alice.Smith");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["email_verified"], false);
    assert_eq!(user["full_name"], "Alice Smith");
    let created = user["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );
}

#[tokio::test]
async fn optional_fields_may_be_absent_null_or_empty() {
    let app = spawn_app().await;
    for (i, extra) in [
        json!({}),
        json!({"email": null, "full_name": null}),
        json!({"email": "", "full_name": ""}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = json!({"username": format!("opt{i}"), "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = app.register(&body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let user: Value = r.json().await.unwrap();
        assert_eq!(user["email"], Value::Null);
        assert_eq!(user["full_name"], Value::Null);
    }
}

#[tokio::test]
async fn the_tutorial_client_flow_works_unchanged() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/users/"))
        .json(&json!({"username": "johndoe", "email": "johndoe@example.com", "full_name": "John Doe", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // OAuth2PasswordRequestForm sends only username and password.
    let r = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username=johndoe&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair: Value = r.json().await.unwrap();
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 1800);
    assert_eq!(pair["refresh_expires_in"], 1_209_600);

    let r = app
        .client
        .get(app.url("/users/me/"))
        .header(
            "Authorization",
            format!("Bearer {}", pair["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["username"], "johndoe");
    assert_eq!(me["email"], "johndoe@example.com");
    assert_eq!(me["full_name"], "John Doe");
}

#[tokio::test]
async fn usernames_and_emails_are_unique_without_regard_to_case() {
    let app = spawn_app().await;
    app.register(&json!({"username": "bob", "password": PASSWORD, "email": "bob@example.com"}))
        .await;

    let r = app
        .register(&json!({"username": "BOB", "password": PASSWORD}))
        .await;
    assert_error(r, StatusCode::CONFLICT, "username_taken").await;

    let r = app
        .register(&json!({"username": "bobby", "password": PASSWORD, "email": "Bob@Example.COM"}))
        .await;
    assert_error(r, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_one_201_and_the_rest_409() {
    let app = spawn_app().await;
    let names = ["racer", "RACER", "Racer", "rAcEr", "racer", "RaCeR"];
    let bodies: Vec<Value> = names
        .iter()
        .map(|name| json!({"username": name, "password": PASSWORD}))
        .collect();
    let responses = join_all(bodies.iter().map(|body| app.register(body))).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        names.len() - 1,
        "{statuses:?}"
    );
}

async fn refused(app: &TestApp, body: Value, field: &str, message_part: &str) {
    let r = app.register(&body).await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = body["fields"].as_array().expect("a fields list");
    let hit = fields
        .iter()
        .find(|f| f["field"] == field)
        .unwrap_or_else(|| panic!("{field} in {body}"));
    let message = hit["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{message:?} should mention {message_part:?}"
    );
}

#[tokio::test]
async fn every_invalid_field_is_a_422_naming_it() {
    let app = spawn_app().await;
    let pw = PASSWORD;
    let cases = [
        (json!({"password": pw}), "username", "required"),
        (json!({"username": "someone"}), "password", "required"),
        (
            json!({"username": "ab", "password": pw}),
            "username",
            "at least 3",
        ),
        (
            json!({"username": "x".repeat(33), "password": pw}),
            "username",
            "at most 32",
        ),
        (
            json!({"username": "bad name!", "password": pw}),
            "username",
            "letters, digits",
        ),
        (
            json!({"username": "emoji😀", "password": pw}),
            "username",
            "letters, digits",
        ),
        (
            json!({"username": 42, "password": pw}),
            "username",
            "invalid type",
        ),
        (
            json!({"username": "someone", "password": "short"}),
            "password",
            "at least 8",
        ),
        (
            json!({"username": "someone", "password": "x7Qz".repeat(33)}),
            "password",
            "at most 128",
        ),
        (
            json!({"username": "longname", "password": "longname"}),
            "password",
            "username",
        ),
        (
            json!({"username": "carol", "password": "xx-Carol-1977-yy"}),
            "password",
            "username",
        ),
        (
            json!({"username": "someone", "password": "password123"}),
            "password",
            "common",
        ),
        (
            json!({"username": "someone", "password": "qwertyuiop"}),
            "password",
            "common",
        ),
        (
            json!({"username": "someone", "password": pw, "email": "not-an-email"}),
            "email",
            "valid",
        ),
        (
            json!({"username": "someone", "password": pw, "email": "a@b"}),
            "email",
            "valid",
        ),
        (
            json!({"username": "someone", "password": pw, "full_name": "x".repeat(129)}),
            "full_name",
            "128",
        ),
    ];
    for (body, field, message_part) in cases {
        refused(&app, body, field, message_part).await;
    }
}

#[tokio::test]
async fn all_missing_fields_are_reported_together() {
    let app = spawn_app().await;
    let body = assert_error(
        app.register(&json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let fields = field_names(&body);
    assert_eq!(fields, ["username", "password"]);
}

#[tokio::test]
async fn malformed_bodies_are_400_or_415_never_500() {
    let app = spawn_app().await;
    let json = Some("application/json");
    let huge = serde_json::to_vec(
        &json!({"username": "big", "password": PASSWORD, "full_name": "x".repeat(20_000)}),
    )
    .unwrap();
    let cases: [(Option<&str>, Vec<u8>, StatusCode, &str); 8] = [
        (
            json,
            b"{\"username\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            json,
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            json,
            vec![0xff, 0xfe, 0x00],
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            json,
            b"[1, 2]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json,
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Some("text/plain"),
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            None,
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"username=a&password=b".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let mut req = app.client.post(app.url("/users"));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        assert_error(req.body(body).send().await.unwrap(), status, code).await;
    }
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_phc_strings() {
    let app = spawn_app().await;
    app.register_user("hashcheck").await;
    let hashes: Vec<String> = app.db.query_column("SELECT password_hash FROM users").await;
    assert_eq!(hashes.len(), 1);
    assert!(
        hashes[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        hashes[0]
    );
    assert!(!hashes[0].contains(PASSWORD));
}
