//! The answers of the token and account endpoints against the OpenAPI document the server
//! publishes: each body must validate against the schema `/openapi.json` gives for its
//! method, path and status, so that the document cannot drift from the handlers.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::{helpers::*, mfa::code_now};

/// The served document, and a check of answers against it.
struct Contract {
    document: Value,
}

impl Contract {
    async fn of(app: &TestApp) -> Self {
        Self {
            document: app.get("/openapi.json").await.json().await.unwrap(),
        }
    }

    /// Asserts that `r` is documented for `method path` (a path template such as
    /// `/users/me/api-keys/{id}`) with its status, and that its body validates against the
    /// schema documented for that status; returns the body (`Null` when there is none).
    async fn check(&self, method: &str, path: &str, r: Response) -> Value {
        let status = r.status();
        let documented = &self.document["paths"][path][method]["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which its document does not list"
        );
        let text = r.text().await.unwrap();
        let Some(schema) = documented
            .pointer("/content/application~1json/schema")
            .cloned()
        else {
            assert!(
                text.is_empty(),
                "{method} {path} {status}: undocumented body {text}"
            );
            return Value::Null;
        };
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} {status}: not JSON: {text}"));
        // The schema's `$ref`s point into the document's components: give it them.
        let mut root = json!({ "allOf": [schema], "components": self.document["components"] });
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::validator_for(&root).expect("a valid JSON Schema");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {body}\ndoes not match its documented schema:\n{}",
            errors.join("\n")
        );
        body
    }
}

#[tokio::test]
async fn registration_and_the_token_endpoints_answer_as_documented() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let name = unique_name("doc");

    let user = contract
        .check(
            "post",
            "/users",
            app.register(&json!({"username": name, "password": PASSWORD}))
                .await,
        )
        .await;
    assert_eq!(user["username"], name.as_str());
    for (body, status) in [
        (
            json!({"username": name, "password": PASSWORD}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"username": "x", "password": "short"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = app.register(&body).await;
        assert_eq!(r.status(), status);
        contract.check("post", "/users", r).await;
    }
    let r = app
        .client
        .post(app.url("/users"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    contract.check("post", "/users", r).await;

    // /token: a pair, wrong credentials, a missing field, an unknown grant.
    let pair = contract
        .check(
            "post",
            "/token",
            app.token(&[("username", &name), ("password", PASSWORD)])
                .await,
        )
        .await;
    for (form, status) in [
        (
            vec![
                ("username", name.as_str()),
                ("password", "wrong-password-1"),
            ],
            StatusCode::UNAUTHORIZED,
        ),
        (vec![("password", PASSWORD)], StatusCode::BAD_REQUEST),
        (
            vec![("grant_type", "client_credentials")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "nope")],
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = app.token(&form).await;
        assert_eq!(r.status(), status, "{form:?}");
        let body = contract.check("post", "/token", r).await;
        assert!(body["error_description"].is_string(), "{body}");
    }

    // /auth/login: a pair, wrong credentials, a missing field.
    contract
        .check(
            "post",
            "/auth/login",
            app.post_json(
                "/auth/login",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await,
        )
        .await;
    for (body, status) in [
        (
            json!({"username": name, "password": "wrong-password-1"}),
            StatusCode::UNAUTHORIZED,
        ),
        (json!({"username": name}), StatusCode::BAD_REQUEST),
    ] {
        let r = app.post_json("/auth/login", &body).await;
        assert_eq!(r.status(), status);
        contract.check("post", "/auth/login", r).await;
    }

    // /auth/refresh: a new pair, a refused token, a missing field, a body that is no JSON.
    let refreshed = contract
        .check(
            "post",
            "/auth/refresh",
            app.refresh(pair["refresh_token"].as_str().unwrap()).await,
        )
        .await;
    for r in [
        app.refresh("not-a-refresh-token").await,
        app.post_json("/auth/refresh", &json!({})).await,
        app.client
            .post(app.url("/auth/refresh"))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap(),
    ] {
        let body = contract.check("post", "/auth/refresh", r).await;
        assert!(body["error_description"].is_string(), "{body}");
    }

    // Logout: with the access token, then again (the session has ended).
    let access = refreshed["access_token"].as_str().unwrap();
    for status in [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED] {
        let r = app.logout_bearer(access).await;
        assert_eq!(r.status(), status);
        contract.check("post", "/auth/logout", r).await;
    }
}

#[tokio::test]
async fn a_login_that_needs_a_second_factor_answers_as_documented() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);

    let enrolment = contract
        .check("post", "/users/me/mfa/totp", app.enrol_totp(&access).await)
        .await;
    let secret = enrolment["secret"].as_str().unwrap();
    let r = app.confirm_totp(&access, "000000").await;
    contract
        .check("post", "/users/me/mfa/totp/confirm", r)
        .await;
    let r = app.confirm_totp(&access, &code_now(&app, secret)).await;
    contract
        .check("post", "/users/me/mfa/totp/confirm", r)
        .await;
    contract
        .check(
            "get",
            "/users/me/mfa",
            app.get_with_authorization("/users/me/mfa", format!("Bearer {access}").as_bytes())
                .await,
        )
        .await;
    app.clock.advance(Duration::from_secs(30));

    let body = contract
        .check(
            "post",
            "/token",
            app.token(&[("username", &name), ("password", PASSWORD)])
                .await,
        )
        .await;
    assert_eq!(body["error"], "mfa_required");
    let body = contract
        .check(
            "post",
            "/auth/login",
            app.post_json(
                "/auth/login",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await,
        )
        .await;
    let mfa_token = body["mfa_token"].as_str().unwrap();
    contract
        .check(
            "post",
            "/auth/mfa",
            app.second_step(mfa_token, "000000").await,
        )
        .await;
    contract
        .check(
            "post",
            "/auth/mfa",
            app.second_step(mfa_token, &code_now(&app, secret)).await,
        )
        .await;
}

#[tokio::test]
async fn the_account_endpoints_answer_as_documented() {
    let app = spawn_app().await;
    let contract = Contract::of(&app).await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let (_, other) = app.new_session().await;
    let (other_access, _) = tokens(&other);

    contract
        .check("get", "/users/me", app.me(&access).await)
        .await;
    contract
        .check("get", "/users/me", app.me("not-a-token").await)
        .await;

    for body in [
        json!({"email": "doc@example.com", "full_name": "Doc"}),
        json!({"email": "not an address"}),
    ] {
        contract
            .check("patch", "/users/me", app.patch_me(&access, &body).await)
            .await;
    }
    let r = app
        .patch_me(&other_access, &json!({"email": "DOC@example.com"}))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    contract.check("patch", "/users/me", r).await;

    // A key: made, listed, refused where credentials are managed, revoked, then unknown.
    let created = contract
        .check(
            "post",
            "/users/me/api-keys",
            app.create_api_key(&access, &json!({"name": "doc"})).await,
        )
        .await;
    let (key, id) = (
        created["key"].as_str().unwrap(),
        created["id"].as_str().unwrap(),
    );
    contract
        .check("get", "/users/me/api-keys", app.api_keys(&access).await)
        .await;
    let r = app.create_api_key(key, &json!({"name": "by a key"})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    contract.check("post", "/users/me/api-keys", r).await;
    let r = app.create_api_key(&access, &json!({"name": ""})).await;
    contract.check("post", "/users/me/api-keys", r).await;
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let r = app.revoke_api_key(&access, id).await;
        assert_eq!(r.status(), status);
        contract.check("delete", "/users/me/api-keys/{id}", r).await;
    }

    let sessions = contract
        .check("get", "/users/me/sessions", app.sessions(&access).await)
        .await;
    let r = app
        .end_session(&access, "00000000-0000-0000-0000-000000000000")
        .await;
    contract.check("delete", "/users/me/sessions/{id}", r).await;
    assert!(sessions.as_array().is_some_and(|s| !s.is_empty()));
    contract
        .check("get", "/users/me/events", app.events(&access, "").await)
        .await;
    contract
        .check(
            "get",
            "/users/me/events",
            app.events(&access, "?limit=0").await,
        )
        .await;

    // The password: a wrong current one, a refused new one, then a change.
    for (current, new) in [
        ("wrong-password-1", "a brand new passphrase 9"),
        (PASSWORD, "password123"),
        (PASSWORD, "a brand new passphrase 9"),
    ] {
        let r = app.change_password(&access, current, new).await;
        contract.check("post", "/users/me/password", r).await;
    }
    let r = app.delete_me(&access, "wrong-password-1").await;
    contract.check("delete", "/users/me", r).await;
    let r = app.delete_me(&access, "a brand new passphrase 9").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    contract.check("delete", "/users/me", r).await;
    contract
        .check(
            "post",
            "/auth/logout-all",
            app.logout_all(&other_access).await,
        )
        .await;
    contract
        .check(
            "post",
            "/auth/logout-all",
            app.logout_all(&other_access).await,
        )
        .await;
}

/// Each endpoint that takes a new password under another name names that field when the
/// policy refuses it.
#[tokio::test]
async fn a_refused_new_password_names_the_field_it_came_in() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let r = app.change_password(&access, PASSWORD, "password123").await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["fields"][0]["field"], "new_password", "{body}");
    let r = app
        .send(
            Method::POST,
            "/users/me/password",
            &access,
            Some(&json!({})),
        )
        .await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = field_names(&body);
    assert_eq!(fields, ["current_password", "new_password"], "{body}");
}

/// A body the endpoint cannot read is `400 malformed_body` at every JSON token endpoint,
/// with RFC 6749's `error_description` as the token endpoints' other errors.
#[tokio::test]
async fn unreadable_bodies_at_the_token_endpoints_carry_an_error_description() {
    let app = spawn_app().await;
    for path in ["/auth/login", "/auth/refresh", "/auth/mfa", "/auth/logout"] {
        let r = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body("{\"refresh_token\": ")
            .send()
            .await
            .unwrap();
        let body = assert_error(r, StatusCode::BAD_REQUEST, "malformed_body").await;
        assert!(body["error_description"].is_string(), "{path}: {body}");
    }
}
