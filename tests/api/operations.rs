use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    for path in ["/healthz", "/healthz/", "/readyz", "/readyz/"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn every_endpoint_answers_with_and_without_a_trailing_slash() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    for slash in ["", "/"] {
        let r = app
            .client
            .get(app.url(&format!("/users/me{slash}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app
            .post_json(
                &format!("/users{slash}"),
                &json!({"username": unique_name("s"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = app
            .client
            .post(app.url(&format!("/token{slash}")))
            .form(&[("username", &name), ("password", &PASSWORD.to_owned())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = app
            .post_json(
                &format!("/auth/login{slash}"),
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let fresh: Value = r.json().await.unwrap();
        let r = app
            .post_json(
                &format!("/auth/refresh{slash}"),
                &json!({"refresh_token": tokens(&fresh).1}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let fresh: Value = r.json().await.unwrap();
        let r = app
            .client
            .post(app.url(&format!("/auth/logout{slash}")))
            .bearer_auth(tokens(&fresh).0)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let r = app.get(&format!("/.well-known/jwks.json{slash}")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let other = app.login(&name, PASSWORD).await;
    let r = app
        .client
        .post(app.url("/auth/logout-all/"))
        .bearer_auth(tokens(&other).0)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_response_carries_a_request_id_echoing_the_clients() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());
    let r = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    assert_error(app.get("/nope").await, StatusCode::NOT_FOUND, "not_found").await;
    // The tutorial's user-dumping GET / does not exist.
    assert_error(app.get("/").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(
        app.get("/token").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    assert_error(
        app.client.put(app.url("/users/me")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_ones() {
    let app = spawn_app().await;
    let addr = app.addr;
    let body = json!({"username": "inflight", "password": PASSWORD}).to_string();
    // Send the headers now and the body only after shutdown has begun.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /users HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections once stopping"
    );
    assert!(!stopping.is_finished(), "waits for the in-flight request");

    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn a_bad_setting_exits_non_zero_with_one_line_naming_it() {
    let secret = "too-short-secret";
    for (name, value) in [
        ("AUTHD_JWT_SECRET", secret),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("AUTHD_ADDR", "not an address"),
        ("AUTHD_ACCESS_TTL_SECS", "soon"),
        ("AUTHD_REFRESH_GRACE_SECS", "-1"),
    ] {
        let out = authd().env(name, value).output().unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
}

#[test]
fn settings_are_read_from_a_dotenv_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "AUTHD_ACCESS_TTL_SECS=later\n").unwrap();
    let out = authd().current_dir(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTHD_ACCESS_TTL_SECS"));
}

#[test]
fn help_lists_the_commands() {
    let out = authd().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("serve") && help.contains("migrate"), "{help}");
}

/// `.env.example` documents every setting; `authd serve --help` must list each with its
/// variable, and list no variable that `.env.example` does not document.
#[test]
fn serve_help_lists_every_setting_of_the_example_env_file() {
    let out = authd().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let documented: Vec<&str> = example
        .lines()
        .map(|line| line.trim_start_matches("# "))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .filter(|name| *name != "RUST_LOG")
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for name in &documented {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} missing from:\n{help}"
        );
    }
    let listed = help.matches("[env: ").count();
    assert_eq!(listed, documented.len(), "{help}");
}

#[tokio::test]
async fn migrate_applies_the_schema_and_exits() {
    let db = TestDb::new().await;
    let out = authd()
        .env("DATABASE_URL", &db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let versions: Vec<i64> = db
        .query_column("SELECT version FROM _sqlx_migrations")
        .await;
    assert!(!versions.is_empty());
    let users: Vec<i64> = db.query_column("SELECT COUNT(*) FROM users").await;
    assert_eq!(users, [0]);
}

pub(crate) type Started = (
    std::process::Child,
    String,
    BufReader<std::process::ChildStderr>,
);

/// Starts the binary on a random port and returns it with its address and its log so far.
/// `rust_log` must let the `info` line that names the address through.
fn start_binary(db: &TestDb, rust_log: &str) -> Started {
    start_binary_with(db, rust_log, &[])
}

/// As [`start_binary`], with more environment variables.
pub(crate) fn start_binary_with(db: &TestDb, rust_log: &str, env: &[(&str, &str)]) -> Started {
    let mut child = authd()
        .env("DATABASE_URL", &db.url)
        .env("AUTHD_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", rust_log)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(at) = line.find("addr=") {
            let addr = line[at + 5..].split_whitespace().next().unwrap().to_owned();
            return (child, format!("http://{addr}"), stderr);
        }
        line.clear();
    }
    let _ = child.kill();
    let status = child.wait();
    panic!("authd exited before listening: {status:?}");
}

pub(crate) fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly_and_the_log_has_no_secrets() {
    let db = TestDb::new().await;
    let (mut child, base, mut stderr) = start_binary(&db, "debug");
    let client = reqwest::Client::new();
    let password = "a-very-distinctive-password-77";
    let r = client
        .post(format!("{base}/users"))
        .json(&json!({"username": "logcheck", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let pair: Value = client
        .post(format!("{base}/token"))
        .form(&[("username", "logcheck"), ("password", password)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (access, refresh) = tokens(&pair);
    let next: Value = client
        .post(format!("{base}/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client
        .get(format!("{base}/users/me"))
        .bearer_auth(&access)
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    client
        .post(format!("{base}/auth/logout"))
        .json(&json!({"refresh_token": tokens(&next).1}))
        .send()
        .await
        .unwrap();

    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();

    for secret in [
        password,
        &access,
        &refresh,
        &tokens(&next).0,
        &tokens(&next).1,
        "$argon2id$",
    ] {
        assert!(!log.contains(secret), "the log contains a secret: {secret}");
    }
    let me_line = log
        .lines()
        .find(|l| l.contains("trace-me-1") && l.contains("status="))
        .unwrap_or_else(|| panic!("no request line for /users/me in:\n{log}"));
    for part in [
        "method=GET",
        "route=\"/users/me\"",
        "status=200",
        "latency_us=",
    ] {
        assert!(me_line.contains(part), "{part} missing in {me_line}");
    }
    assert!(log.contains("authd stopped"));
}

#[tokio::test]
async fn the_healthcheck_command_reports_a_running_server() {
    let db = TestDb::new().await;
    let (mut child, base, _stderr) = start_binary(&db, "info");
    let addr = base.trim_start_matches("http://").to_owned();
    let ok = authd()
        .env("AUTHD_ADDR", &addr)
        .arg("healthcheck")
        .output()
        .unwrap();
    sigterm(&child);
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The server is gone now.
    let down = authd()
        .env("AUTHD_ADDR", &addr)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(!down.status.success());
}

/// A binary given a capability (`setcap`, to bind a low port without root) runs in the
/// loader's secure mode: the server must still start and serve. Needs root, `setcap` and
/// `setpriv` (util-linux) to set the scene.
#[cfg(target_os = "linux")]
#[test]
fn a_binary_with_a_capability_starts_and_serves() {
    use std::os::unix::fs::PermissionsExt;

    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !(root && found("setcap") && found("setpriv")) {
        eprintln!("skipped: needs root, setcap and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let binary = dir.path().join("authd");
    std::fs::copy(env!("CARGO_BIN_EXE_authd"), &binary).unwrap();
    let setcap = Command::new("setcap")
        .arg("cap_net_bind_service=+ep")
        .arg(&binary)
        .status()
        .unwrap();
    assert!(setcap.success());

    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&binary)
        .current_dir(dir.path())
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .env("AUTHD_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("addr=") && lines.send(line).is_err() {
                return;
            }
        }
    });
    let started = listening.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        started.is_ok(),
        "the server did not start listening within 10 s"
    );
}

#[tokio::test]
async fn refused_logins_are_logged_with_the_client_ip_and_a_keyed_hash_of_the_name() {
    let db = TestDb::new().await;
    let (child, base, mut stderr) = start_binary(&db, "info");
    let client = reqwest::Client::new();
    let attempt = |name: &'static str| {
        client
            .post(format!("{base}/token"))
            .form(&[("username", name), ("password", "wrong-password-1")])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(
            attempt("sprayed.name").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt("sprayed.name").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        attempt("other.name").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    sigterm(&child);
    let mut child = child;
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();

    assert!(
        !log.contains("sprayed.name") && !log.contains("other.name"),
        "{log}"
    );
    let tag = |line: &str| {
        let at = line
            .find("login=")
            .unwrap_or_else(|| panic!("no tag in {line}"));
        let tag: String = line[at + 6..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        assert_eq!(tag.len(), 16, "{line}");
        tag
    };
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    let throttled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("login throttled"))
        .collect();
    assert_eq!((failed.len(), throttled.len()), (6, 1), "{log}");
    for line in failed.iter().chain(&throttled) {
        assert!(line.contains("client_ip=127.0.0.1"), "{line}");
    }
    let sprayed = tag(failed[0]);
    assert!(failed[..5].iter().all(|l| tag(l) == sprayed));
    assert_eq!(tag(throttled[0]), sprayed);
    assert_ne!(tag(failed[5]), sprayed, "another name, another tag");
}

#[tokio::test]
async fn an_operator_lists_disables_revokes_and_deletes_users_from_the_cli() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    let key = app.api_key(&access, "k").await;
    let url = app.db.url.clone();
    let users = move |args: &[&str]| {
        let out = authd()
            .env("DATABASE_URL", &url)
            .arg("users")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, listed, _) = users(&["list"]);
    assert!(ok && listed.contains(&name), "{listed}");
    let (ok, shown, _) = users(&["show", &name.to_uppercase()]);
    assert!(
        ok && shown.contains("live sessions: 1") && shown.contains("live API keys: 1"),
        "{shown}"
    );

    let (ok, said, _) = users(&["revoke", &name]);
    assert!(
        ok && said.contains("1 sessions ended, 1 API keys revoked"),
        "{said}"
    );
    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&key).await.status(), StatusCode::UNAUTHORIZED);

    let (ok, _, _) = users(&["disable", &name]);
    assert!(ok);
    let login = [("username", name.as_str()), ("password", PASSWORD)];
    assert_eq!(app.token(&login).await.status(), StatusCode::UNAUTHORIZED);
    assert!(users(&["list"]).1.contains(" disabled"));
    let (ok, _, _) = users(&["enable", &name]);
    assert!(ok);
    assert_eq!(app.token(&login).await.status(), StatusCode::OK);

    let (ok, _, _) = users(&["delete", &name]);
    assert!(ok);
    assert_eq!(app.token(&login).await.status(), StatusCode::UNAUTHORIZED);
    let (ok, _, err) = users(&["show", &name]);
    assert!(!ok && err.contains("no user"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// The discovery document names endpoints that work and keys and an algorithm that verify
/// the tokens issued, under the same issuer.
#[tokio::test]
async fn the_discovery_document_matches_the_tokens_issued() {
    for settings in [
        vec![("AUTHD_ISSUER", "https://auth.example.com")],
        vec![(
            "AUTHD_JWT_SECRET",
            "a-test-secret-of-at-least-thirty-two-bytes",
        )],
    ] {
        let app = spawn_app_with(&settings).await;
        let r = app.get("/.well-known/openid-configuration").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "public, max-age=60");
        let doc: Value = r.json().await.unwrap();
        let (_, pair) = app.new_session().await;
        let (access, _) = tokens(&pair);
        let claims = jwt_part(&access, 1);
        let header = jwt_part(&access, 0);
        assert_eq!(doc["issuer"], claims["iss"]);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!([header["alg"]])
        );
        assert_eq!(
            doc["grant_types_supported"],
            json!(["password", "refresh_token"])
        );

        // The endpoints are absolute and on this server (AUTHD_PUBLIC_URL unset: the address).
        let token_endpoint = doc["token_endpoint"].as_str().unwrap();
        assert_eq!(token_endpoint, app.url("/token"));
        let name = unique_name("disco");
        app.register_user(&name).await;
        let r = app
            .client
            .post(token_endpoint)
            .form(&[("username", name.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let jwks: Value = app
            .client
            .get(doc["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks, app.jwks().await);
        if header["alg"] == "EdDSA" {
            assert!(jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == header["kid"]));
        }
        app.stop().await;
    }

    let app = spawn_app_with(&[("AUTHD_PUBLIC_URL", "https://auth.example.com/")]).await;
    let doc: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["token_endpoint"], "https://auth.example.com/token");
    assert_eq!(
        doc["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
    app.stop().await;
}

/// `authd sessions revoke --user` ends the sessions and leaves the keys; a disabled user can
/// neither log in nor refresh, and its live access token is refused at once; `--json` prints
/// what scripts read.
#[tokio::test]
async fn an_operator_revokes_sessions_and_scripts_read_json() {
    let app = spawn_app().await;
    let (name, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    let key = app.api_key(&access, "k").await;
    let run = |args: &[&str]| authd_ok(&app.db.url, args);

    let said: Value =
        serde_json::from_str(&run(&["sessions", "revoke", "--user", &name, "--json"])).unwrap();
    assert_eq!(said["sessions_ended"], 1);
    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&key).await.status(), StatusCode::OK, "API keys stay");
    assert!(run(&["sessions", "revoke", "--user", &name]).contains("0 sessions ended"));

    let listed: Value = serde_json::from_str(&run(&["users", "list", "--json"])).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name.as_str())
        .unwrap();
    assert!(me["id"].is_string() && me["disabled_at"].is_null());

    // Disabled: the live token, the refresh token and the password are all refused.
    let pair = app.login(&name, PASSWORD).await;
    let (access, refresh) = tokens(&pair);
    let said: Value = serde_json::from_str(&run(&["users", "--json", "disable", &name])).unwrap();
    assert!(said["disabled_at"].is_string());
    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let login = [("username", name.as_str()), ("password", PASSWORD)];
    assert_eq!(app.token(&login).await.status(), StatusCode::UNAUTHORIZED);
    let shown: Value = serde_json::from_str(&run(&["users", "show", &name, "--json"])).unwrap();
    assert!(shown["disabled_at"].is_string());
    assert_eq!(shown["totp_enabled"], false);
    app.stop().await;
}

/// `authd keys rotate` while two replicas run: each signs with the new key once it reloads
/// the keys (every 30 s in the background; called here), tokens of the old key verify until
/// they expire, and the old key leaves the JWK set after the access-token lifetime.
#[tokio::test]
async fn a_key_rotation_reaches_every_replica_without_a_restart() {
    let db = TestDb::new().await;
    let a = spawn_app_on(db.clone(), &[]).await;
    let b = spawn_app_on(db.clone(), &[]).await;
    let (name, pair) = a.new_session().await;
    let (old_access, _) = tokens(&pair);
    let old_kid = jwt_part(&old_access, 0)["kid"].as_str().unwrap().to_owned();
    let cli = |args: &[&str]| authd_ok(&db.url, args);

    let said = cli(&["keys", "rotate"]);
    let new_kid = said.split_whitespace().next().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let listed: Value = serde_json::from_str(&cli(&["keys", "list", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[0]["kid"].as_str(), listed[0]["current"].as_bool()),
        (Some(new_kid.as_str()), Some(true))
    );
    assert_eq!(listed[1]["kid"], old_kid.as_str());
    assert!(listed[1]["retired_at"].is_string());
    assert!(cli(&["keys", "list"]).contains(&format!("{new_kid} EdDSA created")));

    for app in [&a, &b] {
        assert!(
            app.auth.reload_keys().await.unwrap(),
            "the rotation is picked up"
        );
        assert!(!app.auth.reload_keys().await.unwrap(), "once");
        let pair = app.login(&name, PASSWORD).await;
        let (access, _) = tokens(&pair);
        assert_eq!(jwt_part(&access, 0)["kid"], new_kid.as_str());
        assert_eq!(app.me(&access).await.status(), StatusCode::OK);
        assert_eq!(
            app.me(&old_access).await.status(),
            StatusCode::OK,
            "old tokens still verify"
        );
        let kids: Vec<Value> = app.jwks().await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&json!(old_kid)) && kids.contains(&json!(new_kid)));
    }

    // Past the access-token lifetime the retired key verifies nothing and is not published.
    a.clock.advance(std::time::Duration::from_secs(31 * 60));
    assert!(a.auth.reload_keys().await.unwrap());
    let jwks = a.jwks().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
    a.stop().await;
    b.stop().await;

    // With AUTHD_JWT_SECRET there are no stored keys to rotate.
    let out = authd()
        .env("DATABASE_URL", &db.url)
        .env(
            "AUTHD_JWT_SECRET",
            "a-test-secret-of-at-least-thirty-two-bytes",
        )
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTHD_JWT_SECRET"));
}

/// The value of the sample `name{labels}` in a Prometheus text page (0 if absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /metrics` counts requests under their route templates, logins by outcome and
/// refreshes, and reports the hashing and database gauges. (Every server of the test
/// process shares one recorder, so the checks are on increases.)
#[tokio::test]
async fn metrics_count_requests_by_route_and_logins_by_outcome() {
    let app = spawn_app().await;
    let scrape = || async {
        let r = app.get("/metrics").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        r.text().await.unwrap()
    };
    let me_ok = r#"authd_http_requests_count{method="GET",route="/users/me",status="200"}"#;
    let failed = r#"authd_logins_total{outcome="failure"}"#;
    let succeeded = r#"authd_logins_total{outcome="success"}"#;
    let rotated = r#"authd_refreshes_total{outcome="rotated"}"#;
    let key_deleted = r#"authd_http_requests_count{method="DELETE",route="/users/me/api-keys/{id}",status="404"}"#;
    let before = scrape().await;

    let (name, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    let wrong = [
        ("username", name.as_str()),
        ("password", "not the password"),
    ];
    assert_eq!(app.token(&wrong).await.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .delete(app.url(&format!("/users/me/api-keys/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let after = scrape().await;
    for series in [me_ok, failed, succeeded, rotated, key_deleted] {
        assert!(
            sample(&after, series) >= sample(&before, series) + 1.0,
            "{series} did not count up:\n{after}"
        );
    }
    let raw_path_label = after
        .split("route=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .any(|route| {
            route
                .split('/')
                .any(|part| uuid::Uuid::parse_str(part).is_ok())
        });
    assert!(!raw_path_label, "a raw path became a label:\n{after}");
    for gauge in [
        "authd_hashing_jobs ",
        r#"authd_db_connections{state="idle"}"#,
        "authd_http_requests_bucket{",
    ] {
        assert!(after.contains(gauge), "{gauge} missing:\n{after}");
    }
    app.stop().await;
}

/// `/openapi.json` is a valid OpenAPI 3.1 document; `/docs` is Swagger UI served from the
/// binary, pointing at it, with no external script, style or image.
#[tokio::test]
async fn the_api_docs_are_served_from_the_binary() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).unwrap_or_else(|e| {
        let at = e.column().saturating_sub(200);
        panic!(
            "not a valid OpenAPI 3.1 document: {e}, near {}",
            &text[at..(at + 300).min(text.len())]
        )
    });
    assert!(spec.openapi.starts_with("3.1"));
    assert!(spec.paths.as_ref().unwrap().contains_key("/users/me"));

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap();
    let page = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // The page's own policy lets it load its files and keep its <base>; nothing else.
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in ["script-src 'self'", "base-uri 'self'", "connect-src 'self'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("http"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let init = client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let init = init.text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    for text in [&html, &init] {
        for external in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "url(http",
            "//cdn",
            "unpkg",
        ] {
            assert!(!text.contains(external), "external reference {external:?}");
        }
    }
    app.stop().await;
}
