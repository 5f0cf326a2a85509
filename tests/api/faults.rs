//! The database going away and coming back. Runs against PostgreSQL (through a proxy the test
//! controls, so the shared server is never stopped); on SQLite there is no server to lose.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::watch};

use crate::helpers::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Forwards to the database.
    Up,
    /// Closes every connection: the database is down.
    Down,
    /// Accepts and holds connections, forwarding nothing: the database hangs.
    Hang,
}

/// A TCP proxy in front of the test's PostgreSQL that can cut or freeze the connection.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Up);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut watch = modes.subscribe();
                tokio::spawn(async move {
                    let mut client = client;
                    let initial = *watch.borrow_and_update();
                    if initial == Mode::Up {
                        let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                            _ = watch.changed() => {}
                        }
                        if *watch.borrow_and_update() == Mode::Hang {
                            // Keep both sockets open and silent until the mode changes again.
                            let _ = watch.changed().await;
                        }
                        return;
                    }
                    if initial == Mode::Hang {
                        let _ = watch.changed().await;
                    }
                    drop(client);
                });
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn status_within(
    fut: impl std::future::Future<Output = reqwest::Response>,
    limit: Duration,
) -> reqwest::Response {
    let started = Instant::now();
    let r = fut.await;
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    r
}

async fn assert_unavailable(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn losing_the_database_gives_503s_and_authd_recovers_without_a_restart() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("database-fault test runs on PostgreSQL (TEST_DATABASE_URL); skipped on SQLite");
        return;
    }
    let mut url = Url::parse(&db.url).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    url.set_port(Some(proxy.addr.port())).unwrap();
    let app = spawn_app_on_url(
        db.clone(),
        url.as_str(),
        &[("AUTHD_REQUEST_TIMEOUT_SECS", "2")],
    )
    .await;

    let (name, pair) = app.new_session().await;
    let (access, refresh) = tokens(&pair);
    let limit = Duration::from_secs(6);

    for mode in [Mode::Down, Mode::Hang] {
        proxy.set(mode);
        assert_eq!(
            app.get("/healthz").await.status(),
            StatusCode::OK,
            "{mode:?}"
        );
        assert_unavailable(status_within(app.get("/readyz"), limit).await).await;
        assert_unavailable(status_within(app.me(&access), limit).await).await;
        assert_unavailable(
            status_within(
                app.token(&[("username", name.as_str()), ("password", PASSWORD)]),
                limit,
            )
            .await,
        )
        .await;
        assert_unavailable(status_within(app.refresh(&refresh), limit).await).await;
        let body = json!({"username": unique_name("during"), "password": PASSWORD});
        assert_unavailable(status_within(app.register(&body), limit).await).await;

        proxy.set(Mode::Up);
        let deadline = Instant::now() + Duration::from_secs(15);
        while app.get("/readyz").await.status() != StatusCode::OK {
            assert!(
                Instant::now() < deadline,
                "authd did not recover from {mode:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            app.me(&access).await.status(),
            StatusCode::OK,
            "after {mode:?}"
        );
    }
    assert_eq!(app.refresh(&refresh).await.status(), StatusCode::OK);
    app.login(&name, PASSWORD).await;

    // Nothing half-written: every session has its first refresh token, every user a hash.
    let orphans: Vec<i64> = db
        .query_column(
            "SELECT COUNT(*) FROM sessions s WHERE NOT EXISTS \
             (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id AND t.generation = 0)",
        )
        .await;
    assert_eq!(orphans, [0]);
    let users: Vec<i64> = db
        .query_column("SELECT COUNT(*) FROM users WHERE password_hash LIKE '$argon2id$%'")
        .await;
    let all: Vec<i64> = db.query_column("SELECT COUNT(*) FROM users").await;
    assert_eq!(users, all);
}

/// Terminates every server connection of the test database but the caller's own, as a DBA,
/// a pooler restart or a failover does.
/// Returns how many it terminated.
async fn terminate_connections(admin: &sqlx::PgPool) -> usize {
    sqlx::query_scalar::<_, bool>(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(admin)
    .await
    .unwrap()
    .into_iter()
    .filter(|terminated| *terminated)
    .count()
}

#[tokio::test]
async fn terminated_connections_give_200_or_503_and_every_chain_carries_on() {
    let db = TestDb::new().await;
    if !db.is_postgres() {
        eprintln!("connection-termination test runs on PostgreSQL; skipped on SQLite");
        return;
    }
    let app = spawn_app_on(db.clone(), &[]).await;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(app.new_session().await);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let unexpected = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let unavailable = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Refresh chains, session checks and logins, all at once, until told to stop.
    let chains = sessions.iter().map(|(_, pair)| {
        let (stop, unexpected, app) = (stop.clone(), unexpected.clone(), &app);
        let unavailable = unavailable.clone();
        let (mut access, mut refresh) = tokens(pair);
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = app.refresh(&refresh).await;
                match r.status() {
                    StatusCode::OK => (access, refresh) = tokens(&r.json().await.unwrap()),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    other => unexpected.lock().unwrap().push(format!("refresh: {other}")),
                }
                let r = app.me(&access).await;
                if !matches!(r.status(), StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE) {
                    unexpected
                        .lock()
                        .unwrap()
                        .push(format!("me: {}", r.status()));
                }
            }
            refresh
        }
    });
    let logins = sessions.iter().take(2).map(|(name, _)| {
        let (stop, unexpected, app) = (stop.clone(), unexpected.clone(), &app);
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = app
                    .token(&[("username", name), ("password", PASSWORD)])
                    .await;
                if !matches!(r.status(), StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE) {
                    unexpected
                        .lock()
                        .unwrap()
                        .push(format!("login: {}", r.status()));
                }
            }
        }
    });
    let chaos = async {
        let mut terminated = 0;
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            terminated += terminate_connections(&admin).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            terminated >= 6,
            "authd's connections were terminated: {terminated}"
        );
    };
    let (last_tokens, (), ()) = tokio::join!(
        futures::future::join_all(chains),
        async {
            futures::future::join_all(logins).await;
        },
        chaos
    );
    let unexpected = unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "answers other than 200 or 503: {unexpected:?}"
    );
    // Every chain carries on from its last acknowledged token.
    for refresh in last_tokens {
        let r = app.refresh(&refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    admin.close().await;
}

#[tokio::test]
async fn a_sqlite_write_locked_out_past_the_busy_timeout_is_503() {
    let db = TestDb::new().await;
    if db.is_postgres() {
        return;
    }
    let app = spawn_app_on(db.clone(), &[]).await;
    let (_, pair) = app.new_session().await;
    let (access, _) = tokens(&pair);
    // Another process holds the write lock longer than authd's busy timeout (5 s).
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    let started = Instant::now();
    let r = app
        .register(&json!({"username": unique_name("locked"), "password": PASSWORD}))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "after {:?}",
        started.elapsed()
    );
    assert!(r.headers().contains_key("retry-after"));
    // Reads do not wait for the writer (WAL).
    assert_eq!(app.me(&access).await.status(), StatusCode::OK);
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
    let r = app
        .register(&json!({"username": unique_name("unlocked"), "password": PASSWORD}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}
