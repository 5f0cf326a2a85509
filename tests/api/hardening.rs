//! The promises of the contract's "Abuse resistance", "Token semantics" and "Secrets at rest"
//! sections that a security review asked for: attempts counted before the password check,
//! device cookies, sealed secrets, NFKC passwords, retention, and logout answering once.

use std::time::Duration;

use authd::{auth::sealing::MasterKey, service::lock_delay, startup::Application};
use futures::future::join_all;
use reqwest::{header, Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn login_with_cookie(
    app: &TestApp,
    name: &str,
    password: &str,
    cookie: Option<&str>,
) -> Response {
    let mut request = app
        .client
        .post(app.url("/token"))
        .form(&[("username", name), ("password", password)]);
    if let Some(value) = cookie {
        request = request.header(header::COOKIE, format!("authd_device={value}"));
    }
    request.send().await.unwrap()
}

fn retry_after(r: &Response) -> u64 {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `n` wrong-password attempts at once; returns how many were checked (`401`) and how
/// many refused unchecked (`429`).
async fn burst(app: &TestApp, name: &str, n: usize) -> (usize, usize) {
    let answers =
        join_all((0..n).map(|_| login_with_cookie(app, name, "wrong-password-1", None))).await;
    let checked = answers
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, n, "only 401s and 429s");
    (checked, refused)
}

#[tokio::test]
async fn a_burst_at_the_threshold_gets_one_password_check_per_unlock() {
    let app = spawn_app().await;
    let name = unique_name("burst");
    app.register_user(&name).await;
    for _ in 0..4 {
        assert_eq!(
            login_with_cookie(&app, &name, "wrong-password-1", None)
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // 24 at once after the 4th failure: the 5th attempt is checked and locks the name; the
    // other 23 are refused before any hashing.
    assert_eq!(burst(&app, &name, 24).await, (1, 23));
    // At each unlock, one more.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(burst(&app, &name, 24).await, (1, 23));
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(burst(&app, &name, 24).await, (1, 23));
}

#[tokio::test]
async fn the_lock_follows_the_doubling_rule_to_fifteen_minutes_and_never_shortens() {
    let app = spawn_app().await;
    let name = unique_name("doubling");
    for failure in 1..=16 {
        let r = login_with_cookie(&app, &name, "wrong-password-1", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {failure}");
        let Some(delay) = lock_delay(failure) else {
            continue;
        };
        let wait = retry_after(&login_with_cookie(&app, &name, "wrong-password-1", None).await);
        assert_eq!(wait, delay.as_secs(), "after failure {failure}");
        // Half-way through the lock, attempts are still refused and do not move its end.
        app.clock.advance(delay / 2);
        let left = retry_after(&login_with_cookie(&app, &name, "wrong-password-1", None).await);
        assert_eq!(
            left,
            delay.as_secs() - delay.as_secs() / 2,
            "after failure {failure}"
        );
        app.clock.advance(delay - delay / 2);
    }
    assert_eq!(lock_delay(16).unwrap().as_secs(), 900);
}

#[tokio::test]
async fn the_owners_device_logs_in_while_an_attacker_has_locked_the_name() {
    let app = spawn_app().await;
    let owner = unique_name("owner");
    let other = unique_name("other");
    app.register_user(&owner).await;
    app.register_user(&other).await;

    let first = login_with_cookie(&app, &owner, PASSWORD, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let set = first.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=31536000"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let device = device_cookie(&first).unwrap();
    let others_device =
        device_cookie(&login_with_cookie(&app, &other, PASSWORD, None).await).unwrap();

    // The attacker locks the name, from the owner's own address even.
    for _ in 0..8 {
        login_with_cookie(&app, &owner, "wrong-password-1", None).await;
    }
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, None).await);
    // Another user's cookie, or an altered one, is no way around the lock.
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, Some(&others_device)).await);
    let mut altered = device.clone().into_bytes();
    altered[40] = if altered[40] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, Some(&altered)).await);
    let renamed = device.replace(&owner.to_lowercase(), &other.to_lowercase());
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, Some(&renamed)).await);

    // The owner's device gets in, and keeps its cookie.
    let r = login_with_cookie(&app, &owner, PASSWORD, Some(&device)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(device_cookie(&r).as_deref(), Some(device.as_str()));
    // Its success reset only the device's count: the name is still locked for others.
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, None).await);

    // The device has its own count: five failures on it lock it too.
    for _ in 0..5 {
        let r = login_with_cookie(&app, &owner, "wrong-password-1", Some(&device)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    retry_after(&login_with_cookie(&app, &owner, PASSWORD, Some(&device)).await);

    // Behind a TLS-terminating proxy, the cookie is Secure.
    let r = app
        .client
        .post(app.url("/token"))
        .header("x-forwarded-proto", "https")
        .form(&[("username", other.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Secure"));
}

#[tokio::test]
async fn the_json_login_sets_and_honours_the_device_cookie_too() {
    let app = spawn_app().await;
    let name = unique_name("json");
    app.register_user(&name).await;
    let login = |cookie: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/auth/login"))
            .json(&json!({"username": name, "password": PASSWORD}));
        if let Some(value) = cookie {
            request = request.header(header::COOKIE, format!("authd_device={value}"));
        }
        request.send()
    };
    let device = device_cookie(&login(None).await.unwrap()).unwrap();
    for _ in 0..6 {
        login_with_cookie(&app, &name, "wrong-password-1", None).await;
    }
    assert_eq!(
        login(None).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login(Some(device)).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_decomposed_unicode_password_logs_in_composed_and_full_width() {
    let app = spawn_app().await;
    let name = unique_name("unicode");
    // "Crème brûlée" typed with combining accents (NFD).
    let decomposed = "Cre\u{300}me-bru\u{302}le\u{301}e-42x";
    let r = app
        .register(&json!({"username": name, "password": decomposed}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let composed = "Cr\u{e8}me-br\u{fb}l\u{e9}e-42x";
    assert_eq!(
        login_with_cookie(&app, &name, composed, None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        login_with_cookie(&app, &name, decomposed, None)
            .await
            .status(),
        StatusCode::OK
    );
    // Full-width digits are the same digits under NFKC.
    let full_width = "Cr\u{e8}me-br\u{fb}l\u{e9}e-\u{ff14}\u{ff12}x";
    assert_eq!(
        login_with_cookie(&app, &name, full_width, None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        login_with_cookie(&app, &name, "Creme-brulee-42x", None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn of_two_logouts_at_once_exactly_one_succeeds() {
    let app = spawn_app().await;
    for by_refresh in [false, true] {
        let (_, pair) = app.new_session().await;
        let (access, refresh) = tokens(&pair);
        let answers = if by_refresh {
            join_all((0..4).map(|_| app.logout_refresh(&refresh))).await
        } else {
            join_all((0..4).map(|_| app.logout_bearer(&access))).await
        };
        let ended = answers
            .iter()
            .filter(|r| r.status() == StatusCode::NO_CONTENT)
            .count();
        let refused = answers
            .iter()
            .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
            .count();
        assert_eq!((ended, refused), (1, 3), "by refresh token: {by_refresh}");
    }
}

#[tokio::test]
async fn logging_out_an_expired_session_is_401() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_TTL_SECS", "60")]).await;
    let (_, pair) = app.new_session().await;
    let (_, refresh) = tokens(&pair);
    app.clock.advance(Duration::from_secs(61));
    let r = app.logout_refresh(&refresh).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_sessions_their_token_hashes_and_stale_counts_are_deleted() {
    let app = spawn_app_with(&[("AUTHD_REFRESH_TTL_SECS", "3600")]).await;
    let (_, old) = app.new_session().await;
    let (_, old_refresh) = tokens(&old);
    assert_eq!(app.refresh(&old_refresh).await.status(), StatusCode::OK);
    login_with_cookie(&app, "nobody-here", "wrong-password-1", None).await;

    app.clock.advance(Duration::from_secs(1800));
    let (_, live) = app.new_session().await;
    let (_, live_refresh) = tokens(&live);
    let count = |sql: &'static str| app.db.query_column::<i64>(sql);
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, [2]);
    assert_eq!(count("SELECT COUNT(*) FROM refresh_tokens").await, [3]);

    // Nothing has expired yet.
    assert_eq!(app.auth.housekeeping().await.unwrap().sessions, 0);
    // An hour after the first session's last use, it has; the attempt count goes after a day.
    app.clock.advance(Duration::from_secs(1801));
    let pruned = app.auth.housekeeping().await.unwrap();
    assert_eq!((pruned.sessions, pruned.attempt_counts), (1, 0));
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, [1]);
    assert_eq!(
        count("SELECT COUNT(*) FROM refresh_tokens").await,
        [1],
        "the old hashes went with it"
    );
    // The other session is still live.
    assert_eq!(app.refresh(&live_refresh).await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(24 * 3600));
    let pruned = app.auth.housekeeping().await.unwrap();
    assert_eq!((pruned.sessions, pruned.attempt_counts), (1, 1));
    assert_eq!(count("SELECT COUNT(*) FROM login_attempts").await, [0]);
}

async fn stored_private_keys(db: &TestDb) -> Vec<Vec<u8>> {
    let mut all = db
        .query_column::<Vec<u8>>("SELECT private_key FROM signing_keys")
        .await;
    all.extend(
        db.query_column::<Vec<u8>>("SELECT secret FROM server_secrets ORDER BY name")
            .await,
    );
    all
}

/// Every file of the SQLite database (`authd.db`, `-wal`, `-shm`), read whole.
fn database_files(db: &TestDb) -> Vec<u8> {
    let path = db.url.strip_prefix("sqlite://").unwrap();
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::read(format!("{path}{suffix}")).ok())
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_master_key_seals_the_stored_secrets_and_a_wrong_one_changes_nothing() {
    let db = TestDb::new().await;
    // First started without a master key: secrets in clear.
    let app = spawn_app_on(db.clone(), &[]).await;
    let kid = app.jwks().await["keys"][0]["kid"].clone();
    app.stop().await;
    let clear = stored_private_keys(&db).await;
    assert_eq!(clear.len(), 6, "one signing key and five server secrets");
    let clear_sealed = db
        .query_column::<bool>("SELECT sealed FROM signing_keys")
        .await;
    assert_eq!(clear_sealed, [false]);

    // Started with one: every row is sealed, no clear copy is left in the files.
    let key_a = MasterKey::generate_text();
    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_a.as_str())]).await;
    assert_eq!(
        app.jwks().await["keys"][0]["kid"],
        kid,
        "the same signing key"
    );
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    app.stop().await;
    let sealed = stored_private_keys(&db).await;
    for (was, now) in clear.iter().zip(&sealed) {
        assert_ne!(was, now);
        assert!(!now.windows(was.len()).any(|w| w == was.as_slice()));
    }
    if !db.is_postgres() {
        let files = database_files(&db);
        for secret in &clear {
            assert!(
                !files.windows(secret.len()).any(|w| w == secret.as_slice()),
                "a secret is still in the database files in clear"
            );
        }
    }

    // A wrong key, or none, stops the start with one line naming the setting; nothing changes.
    let key_b = MasterKey::generate_text();
    for settings in [vec![("AUTHD_MASTER_KEY", key_b.as_str())], vec![]] {
        let config = test_config(&db, &settings);
        let err = Application::build(&config).await.err().expect("refused");
        let message = format!("{err:#}");
        assert!(message.contains("AUTHD_MASTER_KEY"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(stored_private_keys(&db).await, sealed);
    }

    // The right key: the same keys, and tokens issued before still verify.
    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_a.as_str())]).await;
    assert_eq!(app.jwks().await["keys"][0]["kid"], kid);
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn rekey_moves_the_secrets_to_a_new_master_key() {
    let db = TestDb::new().await;
    let key_a = MasterKey::generate_text();
    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_a.as_str())]).await;
    let kid = app.jwks().await["keys"][0]["kid"].clone();
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let key_b = MasterKey::generate_text();
    let file = dir.path().join("new.key");
    std::fs::write(&file, format!("{key_b}\n")).unwrap();
    let rekey = |current: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_authd"))
            .args(["keys", "rekey", "--new-key-file"])
            .arg(&file)
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("AUTHD_MASTER_KEY", current)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // With a wrong current key: refused, nothing changed.
    let before = stored_private_keys(&db).await;
    let wrong = rekey(&MasterKey::generate_text());
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("AUTHD_MASTER_KEY"));
    assert_eq!(stored_private_keys(&db).await, before);

    let done = rekey(&key_a);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("6 stored secrets"));

    let old = test_config(&db, &[("AUTHD_MASTER_KEY", key_a.as_str())]);
    assert!(
        Application::build(&old).await.is_err(),
        "the old key opens nothing now"
    );
    let app = spawn_app_on(db.clone(), &[("AUTHD_MASTER_KEY", key_b.as_str())]).await;
    assert_eq!(app.jwks().await["keys"][0]["kid"], kid);
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new().await;
    if db.is_postgres() {
        return;
    }
    let app = spawn_app_on(db.clone(), &[]).await;
    app.new_session().await;
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let mode = std::fs::metadata(format!("{path}{suffix}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{path}{suffix}");
    }
    app.stop().await;
}
