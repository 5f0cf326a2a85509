//! Self-service: one's own sessions.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

async fn sessions(app: &TestApp, credential: &str) -> Value {
    let r = app
        .client
        .get(app.url("/users/me/sessions"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn end_session(app: &TestApp, credential: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/users/me/sessions/{id}")))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

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

    let list = sessions(&app, &first_access).await;
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
        sessions(&app, &other_access)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = end_session(&app, &other_access, phone_id).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&second_access).await.status(), StatusCode::OK);

    // Its owner ends it: its tokens stop working at once; the caller's session lives on.
    let r = end_session(&app, &first_access, phone_id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.me(&second_access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&first_access).await.status(), StatusCode::OK);
    assert_eq!(
        sessions(&app, &first_access)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        end_session(&app, &first_access, phone_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        end_session(&app, &first_access, "nope").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_api_key_may_list_sessions_but_not_end_them() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let created: Value = app
        .client
        .post(app.url("/users/me/api-keys"))
        .bearer_auth(&access)
        .json(&json!({"name": "monitor"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let list = sessions(&app, key).await;
    assert_eq!(list[0]["current"], false, "a key is no session");
    let id = list[0]["id"].as_str().unwrap();
    let r = end_session(&app, key, id).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
}
