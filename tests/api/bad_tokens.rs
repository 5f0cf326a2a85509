use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "an-hs256-secret-of-more-than-32-bytes!";

fn sign(claims: &Value, kid: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn assert_invalid_token(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_missing_credential_is_a_plain_bearer_challenge() {
    let app = spawn_app().await;
    let r = app.get("/users/me").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="authd""#);
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Another scheme is no Bearer credential either.
    let r = app
        .get_with_authorization("/users/me", b"Basic dXNlcjpwYXNz")
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn garbage_authorization_headers_are_401_invalid_token() {
    let app = spawn_app().await;
    for garbage in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer a b c",
        b"Bearer not-a-jwt",
        b"Bearer a.b.c",
        b"Bearer ....",
        b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.",
        b"Bearer \xc3\xa9\xc3\xa9",
        b"Bearer <script>alert(1)</script>",
    ] {
        let r = app.get_with_authorization("/users/me", garbage).await;
        assert_invalid_token(r).await;
    }
    let long = format!("Bearer {}", "a".repeat(6000));
    assert_invalid_token(
        app.get_with_authorization("/users/me", long.as_bytes())
            .await,
    )
    .await;
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = spawn_app_with(&[("AUTHD_JWT_SECRET", SECRET)]).await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let claims = jwt_part(&access, 1);
    let now = chrono::Utc::now().timestamp();

    // Control: re-signing the real claims with the real secret is accepted...
    assert_eq!(
        app.me(&sign(&claims, "hs256", SECRET)).await.status(),
        StatusCode::OK
    );

    // ...and every change below is refused.
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 60);
    let r = app.me(&sign(&expired, "hs256", SECRET)).await;
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("expired"));
    assert_invalid_token(r).await;

    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("evil");
    assert_invalid_token(app.me(&sign(&wrong_iss, "hs256", SECRET)).await).await;

    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-api");
    assert_invalid_token(app.me(&sign(&wrong_aud, "hs256", SECRET)).await).await;

    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(app.me(&sign(&no_exp, "hs256", SECRET)).await).await;

    assert_invalid_token(
        app.me(&sign(
            &claims,
            "hs256",
            "a-different-secret-of-32-bytes-or-more",
        ))
        .await,
    )
    .await;
    assert_invalid_token(app.me(&sign(&claims, "unknown-kid", SECRET)).await).await;

    // alg: none, with the real claims and no signature.
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"hs256"}"#);
    let payload = access.split('.').nth(1).unwrap();
    assert_invalid_token(app.me(&format!("{none_header}.{payload}.")).await).await;

    // A tampered payload under the original signature.
    let mut tampered = claims.clone();
    tampered["username"] = json!("admin");
    let parts: Vec<&str> = access.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(tampered.to_string()),
        parts[2]
    );
    assert_invalid_token(app.me(&forged).await).await;

    // A valid signature over a session that does not exist.
    let mut other_session = claims.clone();
    other_session["sid"] = json!(uuid::Uuid::new_v4());
    assert_invalid_token(app.me(&sign(&other_session, "hs256", SECRET)).await).await;
}

#[tokio::test]
async fn ed25519_tokens_signed_by_another_key_or_as_hs256_are_refused() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let header = jwt_part(&access, 0);
    let claims = jwt_part(&access, 1);
    let kid = header["kid"].as_str().unwrap();

    // Algorithm confusion: HS256 keyed with the published public key.
    let jwks: Value = app.jwks().await;
    let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.into());
    let confused = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&x)).unwrap();
    assert_invalid_token(app.me(&confused).await).await;

    // Another Ed25519 key under the same kid.
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.into());
    let wrong_key =
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert_invalid_token(app.me(&wrong_key).await).await;
}
