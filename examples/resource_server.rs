//! A service of your own that trusts authd's access tokens without calling authd on each
//! request: it verifies them offline against authd's JWK set.
//!
//!     AUTHD_URL=http://127.0.0.1:8000 cargo run --example resource_server
//!     curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:8001/hello
//!
//! Settings (environment): `AUTHD_URL` (where authd answers, default
//! `http://127.0.0.1:8000`), `AUTHD_ISSUER` and `AUTHD_AUDIENCE` (as authd is configured,
//! default `authd`), `BIND` (default `127.0.0.1:8001`).
//!
//! The keys are fetched once and cached by `kid`. A token naming a `kid` not in the cache
//! (authd rotated its key) makes the service fetch the set again, at most once per
//! [`REFETCH_FLOOR`]: a flood of made-up `kid`s cannot turn into a flood of requests to
//! authd. Each token's signature, algorithm (EdDSA only), `iss`, `aud` and `exp` are
//! checked.
//!
//! Offline verification is fast and keeps working while authd is down, but a token stays
//! valid here until its `exp` even after a logout (at most the access-token lifetime,
//! 30 minutes by default). Where a revocation must hold at once, ask authd instead:
//! `GET /users/me` with the token answers `401` from the next request on.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// The shortest time between two fetches of the JWK set.
pub const REFETCH_FLOOR: Duration = Duration::from_secs(10);

/// Where to find authd and what its tokens must say.
#[derive(Debug, Clone)]
pub struct Settings {
    pub authd_url: String,
    pub issuer: String,
    pub audience: String,
    /// The shortest time between two fetches of the JWK set ([`REFETCH_FLOOR`]).
    pub refetch_floor: Duration,
}

/// authd's public keys by `kid`, fetched when needed.
pub struct Keys {
    settings: Settings,
    client: reqwest::Client,
    cached: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    fetches: u64,
}

/// The claims this service reads (authd's tokens carry more).
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub username: String,
    pub exp: i64,
}

impl Keys {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            client: reqwest::Client::new(),
            cached: Mutex::new(Cache::default()),
        }
    }

    /// How many times the JWK set was fetched.
    pub fn fetches(&self) -> u64 {
        self.cached.lock().map(|c| c.fetches).unwrap_or(0)
    }

    /// The key named `kid`, fetching the set again if it is unknown and the last fetch is
    /// older than the refetch floor.
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let cache = self.cached.lock().ok()?;
            if let Some(key) = cache.keys.get(kid) {
                return Some(key.clone());
            }
            if cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.settings.refetch_floor)
            {
                return None;
            }
        }
        let fetched = self.fetch().await;
        let mut cache = self.cached.lock().ok()?;
        cache.fetched_at = Some(Instant::now());
        cache.fetches += 1;
        if let Some(keys) = fetched {
            cache.keys = keys;
        }
        cache.keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Option<HashMap<String, DecodingKey>> {
        let url = format!("{}/.well-known/jwks.json", self.settings.authd_url);
        let set: JwkSet = self.client.get(url).send().await.ok()?.json().await.ok()?;
        Some(
            set.keys
                .iter()
                .filter_map(|jwk| {
                    let kid = jwk.common.key_id.clone()?;
                    Some((kid, DecodingKey::from_jwk(jwk).ok()?))
                })
                .collect(),
        )
    }

    /// The claims of a valid token, or `None`.
    pub async fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let key = self.key(header.kid.as_deref()?).await?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The service: one protected route, `GET /hello`.
pub fn app(keys: Arc<Keys>) -> Router {
    Router::new().route("/hello", get(hello)).with_state(keys)
}

async fn hello(State(keys): State<Arc<Keys>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(token) => match keys.verify(token).await {
            Some(claims) => Json(json!({
                "hello": claims.username,
                "user_id": claims.sub,
            }))
            .into_response(),
            None => refused("invalid_token"),
        },
        None => refused("unauthorized"),
    }
}

fn refused(code: &'static str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": code, "detail": "a valid authd access token is required"})),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(r#"Bearer realm="example""#),
    );
    response
}

#[allow(dead_code)] // the tests include this file for `app` and `Keys`, not `main`
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let settings = Settings {
        authd_url: var("AUTHD_URL", "http://127.0.0.1:8000")
            .trim_end_matches('/')
            .to_owned(),
        issuer: var("AUTHD_ISSUER", "authd"),
        audience: var("AUTHD_AUDIENCE", "authd"),
        refetch_floor: REFETCH_FLOOR,
    };
    let listener = tokio::net::TcpListener::bind(var("BIND", "127.0.0.1:8001")).await?;
    println!("resource server on http://{}", listener.local_addr()?);
    axum::serve(listener, app(Arc::new(Keys::new(settings)))).await?;
    Ok(())
}
