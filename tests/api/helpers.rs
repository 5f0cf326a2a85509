//! Test harness: a fresh database per test (SQLite by default, PostgreSQL when
//! `TEST_DATABASE_URL` points at one), apps on random ports, and one helper per endpoint.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use authd::{clock::ManualClock, config::Config, service::AuthService, startup::Application};
use reqwest::{header, Response, StatusCode, Url};
use serde_json::{json, Value};
use tokio::{sync::oneshot, task::JoinHandle};

/// A password that passes the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// A database that exists for one test and is removed after it.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> Arc<Self> {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(admin_url) => {
                let name = format!("authd_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL must point at a running PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let mut url = Url::parse(&admin_url).unwrap();
                url.set_path(&name);
                Arc::new(Self {
                    url: url.to_string(),
                    _dir: None,
                    postgres: Some((admin_url, name)),
                })
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("authd.db").display());
                Arc::new(Self {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Runs a one-column query directly against the database, for assertions about what is
    /// stored.
    pub async fn query_column<T>(&self, sql: &str) -> Vec<T>
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        if self.is_postgres() {
            let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
            let rows = sqlx::query_scalar::<_, T>(sql)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
            let rows = sqlx::query_scalar::<_, T>(sql)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The app's clock: it stands still unless a test advances it.
    pub clock: ManualClock,
    pub base: String,
    pub client: reqwest::Client,
    pub db: Arc<TestDb>,
    /// The service behind the routes, for what HTTP does not reach (housekeeping).
    pub auth: AuthService,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// An app on a fresh database with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// An app on a fresh database with some settings changed.
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    spawn_app_on(TestDb::new().await, settings).await
}

/// Another app on an existing database: a second replica, or the same service restarted.
pub async fn spawn_app_on(db: Arc<TestDb>, settings: &[(&str, &str)]) -> TestApp {
    let url = db.url.clone();
    spawn_app_on_url(db, &url, settings).await
}

/// An app that reaches the test database through another URL (e.g. a proxy in front of it).
pub async fn spawn_app_on_url(db: Arc<TestDb>, url: &str, settings: &[(&str, &str)]) -> TestApp {
    let mut settings = settings.to_vec();
    settings.push(("DATABASE_URL", url));
    let config = test_config(&db, &settings);
    let clock = ManualClock::new();
    let app = Application::build_with_clock(&config, Arc::new(clock.clone()))
        .await
        .expect("the app builds");
    let addr = app.addr();
    let auth = app.auth();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        clock,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        auth,
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub fn test_config(db: &TestDb, settings: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("AUTHD_ADDR".into(), "127.0.0.1:0".into()),
        // Tests log in far more often than people do; the rate-limit tests turn it back on.
        ("AUTHD_LOGIN_RATE_PER_MIN".into(), "0".into()),
    ]);
    for (k, v) in settings {
        vars.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("valid test settings")
}

/// A user name unique to the calling test run.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.take().map(|tx| tx.send(()));
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, body: &Value) -> Response {
        self.post_json("/users/", body).await
    }

    /// Registers `username` with [`PASSWORD`] and returns the user object.
    pub async fn register_user(&self, username: &str) -> Value {
        let r = self
            .register(&json!({"username": username, "password": PASSWORD}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// `POST /token` with form fields.
    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Logs in with the password grant and returns the token pair.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let r = self
            .token(&[("username", username), ("password", password)])
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// Registers a fresh user and logs in: (username, token pair).
    pub async fn new_session(&self) -> (String, Value) {
        let name = unique_name("user");
        self.register_user(&name).await;
        let pair = self.login(&name, PASSWORD).await;
        (name, pair)
    }

    pub async fn me(&self, access_token: &str) -> Response {
        self.client
            .get(self.url("/users/me/"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_with_authorization(&self, path: &str, authorization: &[u8]) -> Response {
        self.client
            .get(self.url(path))
            .header(
                header::AUTHORIZATION,
                header::HeaderValue::from_bytes(authorization).unwrap(),
            )
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/auth/refresh", &json!({ "refresh_token": refresh_token }))
            .await
    }

    pub async fn logout_bearer(&self, access_token: &str) -> Response {
        self.post_bearer("/auth/logout", access_token).await
    }

    pub async fn logout_refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/auth/logout", &json!({ "refresh_token": refresh_token }))
            .await
    }

    pub async fn logout_all(&self, access_token: &str) -> Response {
        self.post_bearer("/auth/logout-all", access_token).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_bearer(&self, path: &str, access_token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    /// The published JWK set.
    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap()
    }
}

/// The `access_token` and `refresh_token` of a pair.
pub fn tokens(pair: &Value) -> (String, String) {
    (
        pair["access_token"].as_str().unwrap().to_owned(),
        pair["refresh_token"].as_str().unwrap().to_owned(),
    )
}

/// Asserts the contract's error shape and code, and returns the body.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "status");
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// The decoded JSON of one part of a JWT (0 = header, 1 = claims).
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The `authd_device` value a login answer sets, if any.
pub fn device_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("authd_device="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}
