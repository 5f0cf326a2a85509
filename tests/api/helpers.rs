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

    /// `method path` with a Bearer credential and, if given, a JSON body. The request is
    /// built at once, so the future owns it (tests send several side by side).
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
        body: Option<&Value>,
    ) -> impl std::future::Future<Output = Response> + 'static {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(body);
        }
        async move { request.send().await.unwrap() }
    }

    /// `GET /users/me/sessions`.
    pub async fn sessions(&self, credential: &str) -> Response {
        self.send(reqwest::Method::GET, "/users/me/sessions", credential, None)
            .await
    }

    /// `DELETE /users/me/sessions/{id}`.
    pub async fn end_session(&self, credential: &str, id: &str) -> Response {
        let path = format!("/users/me/sessions/{id}");
        self.send(reqwest::Method::DELETE, &path, credential, None)
            .await
    }

    /// `GET /users/me/events` with a query string (`""`, `"?limit=2"`, ...).
    pub async fn events(&self, credential: &str, query: &str) -> Response {
        let path = format!("/users/me/events{query}");
        self.send(reqwest::Method::GET, &path, credential, None)
            .await
    }

    /// `PATCH /users/me`.
    pub async fn patch_me(&self, credential: &str, body: &Value) -> Response {
        self.send(reqwest::Method::PATCH, "/users/me", credential, Some(body))
            .await
    }

    /// `POST /users/me/password`.
    pub async fn change_password(&self, credential: &str, current: &str, new: &str) -> Response {
        let body = json!({"current_password": current, "new_password": new});
        self.send(
            reqwest::Method::POST,
            "/users/me/password",
            credential,
            Some(&body),
        )
        .await
    }

    /// `DELETE /users/me` with the account's password.
    pub async fn delete_me(&self, credential: &str, password: &str) -> Response {
        let body = json!({ "password": password });
        self.send(
            reqwest::Method::DELETE,
            "/users/me",
            credential,
            Some(&body),
        )
        .await
    }

    /// `POST /users/me/api-keys`.
    pub async fn create_api_key(&self, credential: &str, body: &Value) -> Response {
        self.send(
            reqwest::Method::POST,
            "/users/me/api-keys",
            credential,
            Some(body),
        )
        .await
    }

    /// A new API key named `name`, made with a session's access token: the key itself.
    pub async fn api_key(&self, access: &str, name: &str) -> String {
        let r = self.create_api_key(access, &json!({ "name": name })).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        let created: Value = r.json().await.unwrap();
        created["key"].as_str().unwrap().to_owned()
    }

    /// `GET /users/me/api-keys`.
    pub async fn api_keys(&self, credential: &str) -> Response {
        self.send(reqwest::Method::GET, "/users/me/api-keys", credential, None)
            .await
    }

    /// `DELETE /users/me/api-keys/{id}`.
    pub async fn revoke_api_key(&self, credential: &str, id: &str) -> Response {
        let path = format!("/users/me/api-keys/{id}");
        self.send(reqwest::Method::DELETE, &path, credential, None)
            .await
    }

    /// `POST /users/me/mfa/totp`: starts an enrolment.
    pub async fn enrol_totp(&self, access: &str) -> Response {
        self.send(reqwest::Method::POST, "/users/me/mfa/totp", access, None)
            .await
    }

    /// `POST /users/me/mfa/totp/confirm`.
    pub async fn confirm_totp(&self, access: &str, code: &str) -> Response {
        let body = json!({ "code": code });
        self.send(
            reqwest::Method::POST,
            "/users/me/mfa/totp/confirm",
            access,
            Some(&body),
        )
        .await
    }

    /// `DELETE /users/me/mfa/totp`.
    pub async fn disable_totp(&self, access: &str, code: &str) -> Response {
        let body = json!({ "code": code });
        self.send(
            reqwest::Method::DELETE,
            "/users/me/mfa/totp",
            access,
            Some(&body),
        )
        .await
    }

    /// `POST /auth/mfa`: the second step of a login.
    pub async fn second_step(&self, mfa_token: &str, code: &str) -> Response {
        self.post_json(
            "/auth/mfa",
            &json!({ "mfa_token": mfa_token, "code": code }),
        )
        .await
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

/// The `authd` binary, run where no `.env` can be picked up, with only the variables a test
/// sets.
pub fn authd() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_authd"));
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// `authd ARGS` on the database at `database_url`: what it printed. Panics, with what it
/// printed on stderr, if it fails.
pub fn authd_ok(database_url: &str, args: &[&str]) -> String {
    let out = authd()
        .env("DATABASE_URL", database_url)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "authd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// The `field` of each entry of a `422`'s `fields`, in order.
pub fn field_names(body: &Value) -> Vec<&str> {
    body["fields"]
        .as_array()
        .expect("a 422 lists its fields")
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect()
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
