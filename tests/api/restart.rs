use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_restart_keeps_users_sessions_and_signing_keys() {
    let first = spawn_app().await;
    let (name, pair) = first.new_session().await;
    let (access, refresh) = tokens(&pair);
    let jwks_before: Value = first.jwks().await;
    let db = first.db.clone();
    first.stop().await;

    let second = spawn_app_on(db, &[]).await;
    let jwks_after: Value = second.jwks().await;
    assert_eq!(jwks_before, jwks_after, "the same key, not a new one");
    assert_eq!(
        second.me(&access).await.status(),
        StatusCode::OK,
        "tokens from before the restart verify"
    );
    assert_eq!(second.refresh(&refresh).await.status(), StatusCode::OK);
    second.login(&name, PASSWORD).await;
}

#[tokio::test]
async fn replicas_starting_together_on_a_new_database_agree_on_one_key() {
    let db = TestDb::new().await;
    let (a, b) = tokio::join!(spawn_app_on(db.clone(), &[]), spawn_app_on(db.clone(), &[]));
    let (_, pair) = a.new_session().await;
    assert_eq!(b.me(&tokens(&pair).0).await.status(), StatusCode::OK);
    let keys: Vec<bool> = db.query_column("SELECT active FROM signing_keys").await;
    assert_eq!(keys.iter().filter(|active| **active).count(), 1);
}
