//! Building and running the application: connect, migrate, load keys, bind, serve.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{
    auth::sealing::MasterKey,
    auth::PasswordHasher,
    clock::{Clock, SystemClock},
    config::Config,
    domain::Password,
    http::state::{AppState, PublicUrl},
    http::{self, clients::Clients, HttpLimits},
    mail::Mailer,
    repo::Repo,
    service::{AuthService, ServiceSettings, TokenPolicy, Vault, KEY_RELOAD_INTERVAL},
};

impl From<&Config> for ServiceSettings {
    fn from(config: &Config) -> Self {
        Self {
            policy: TokenPolicy {
                access_ttl: config.access_ttl,
                refresh_ttl: config.refresh_ttl,
                session_max: config.session_max,
                refresh_grace: config.refresh_grace,
                event_retention: chrono::TimeDelta::days(config.event_retention_days.into()),
            },
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            jwt_secret: config.jwt_secret.clone(),
            master_key: config.master_key.clone(),
            mail_on: config.smtp_url.is_some(),
            require_verified_email: config.require_verified_email,
        }
    }
}

/// A bound, ready-to-serve authd. Tests build it on port 0 and read [`Application::addr`].
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    repo: Repo,
    limits: HttpLimits,
    header_timeout: Duration,
    /// The SMTP transport of the mail sender; `None` without `AUTHD_SMTP_URL`.
    mailer: Option<Mailer>,
}

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Application {
    /// Connects to the database, applies migrations, loads or creates the keys and binds the
    /// listener. Fails without serving anything if any step fails.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the time read from `clock` (tests set it).
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let repo = open_repo(config).await?;
        // Building the hasher computes its dummy hash: a full hash of CPU, kept off the runtime.
        let hasher = tokio::task::spawn_blocking(PasswordHasher::per_core).await??;
        let warm = hasher.clone();
        tokio::spawn(async move { warm.run(|_| Password::warm_up()).await });
        let auth = AuthService::load(repo.clone(), hasher, clock, &ServiceSettings::from(config))
            .await
            .context("cannot load the stored keys")?;

        // Before anything is counted: the process's metrics recorder.
        http::metrics::handle();
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {} (AUTHD_ADDR)", config.addr))?;
        let addr = listener.local_addr()?;
        let limits = HttpLimits {
            request_timeout: config.request_timeout,
            cors_origins: config
                .cors_origins
                .iter()
                .filter_map(|origin| axum::http::HeaderValue::from_str(origin).ok())
                .collect(),
        };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let mailer = config
            .smtp_url
            .as_ref()
            .map(|url| Mailer::new(url, &config.mail_from, &public_url))
            .transpose()?;
        Ok(Self {
            listener,
            addr,
            state: AppState {
                auth,
                clients: Clients::new(&config.trusted_proxies, config.login_rate()),
                public_url: PublicUrl(public_url.into()),
            },
            repo,
            limits,
            header_timeout: config.header_timeout,
            mailer,
        })
    }

    /// The service behind the routes (tests call its housekeeping).
    pub fn auth(&self) -> AuthService {
        self.state.auth.clone()
    }

    /// The address really bound (with the real port when `AUTHD_ADDR` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets in-flight
    /// requests finish (for up to [`SHUTDOWN_GRACE`]), and closes the database pool.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            addr,
            state,
            repo,
            limits,
            header_timeout,
            mailer,
        } = self;
        state.clients.spawn_pruning(Duration::from_secs(60));
        // Only a replica that can send takes mail from the outbox.
        let (stop_sending, stop) = tokio::sync::watch::channel(false);
        let outbox = mailer.map(|mailer| tokio::spawn(state.auth.outbox(mailer).run(stop)));
        let housekeeping = tokio::spawn(housekeeping(state.auth.clone()));
        let key_reload = tokio::spawn(reload_keys(state.auth.clone()));
        let metrics_upkeep = tokio::spawn(http::metrics::upkeep());
        let app = http::router(state, &limits);

        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024);
        let graceful = GracefulShutdown::new();
        tracing::info!(addr = %addr, "authd listening");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = app.clone().map_request(move |req: Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let connection =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests still running after the grace period; closing");
        }
        let _ = stop_sending.send(true);
        if let Some(mut outbox) = outbox {
            // A mail being handed over is finished (its SMTP conversation has a timeout).
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut outbox)
                .await
                .is_err()
            {
                tracing::warn!("the mail sender did not stop within the grace period");
                outbox.abort();
            }
        }
        housekeeping.abort();
        key_reload.abort();
        metrics_upkeep.abort();
        repo.close().await;
        tracing::info!("authd stopped");
        Ok(())
    }
}

/// Hourly, from the start: deletes expired sessions and stale attempt counts.
async fn housekeeping(auth: AuthService) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match auth.housekeeping().await {
            Ok(pruned) => tracing::info!(
                sessions = pruned.sessions,
                attempt_counts = pruned.attempt_counts,
                events = pruned.events,
                mfa_challenges = pruned.mfa_challenges,
                email_tokens = pruned.email_tokens,
                mails = pruned.mails,
                "expired records deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "deleting expired records failed"),
        }
    }
}

/// Every [`KEY_RELOAD_INTERVAL`]: puts a rotation made by `authd keys rotate` (on any
/// replica's database) in force here, and lets retired keys expire.
async fn reload_keys(auth: AuthService) {
    let mut tick = tokio::time::interval(KEY_RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match auth.reload_keys().await {
            Ok(true) => tracing::info!(
                kid = %auth.keys().signing_kid(),
                "signing keys reloaded: a rotation is in force"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "reloading the signing keys failed"),
        }
    }
}

/// Makes a new Ed25519 key the one that signs (`authd keys rotate`); returns its `kid`.
/// Tokens signed by the old one keep verifying until they expire; every running replica
/// signs with the new one within [`KEY_RELOAD_INTERVAL`] and some seconds.
pub async fn rotate_keys(config: &Config) -> anyhow::Result<String> {
    anyhow::ensure!(
        config.jwt_secret.is_none(),
        "AUTHD_JWT_SECRET is set: tokens are HS256 with that secret, and there are no stored keys to rotate (change the secret instead)"
    );
    let repo = open_repo(config).await?;
    let rotated = async {
        let vault = Vault::open(repo.clone(), config.master_key.clone()).await?;
        let now = chrono::Utc::now();
        let new = crate::auth::TokenKeys::generate_ed25519(now)?;
        let kid = new.kid.clone();
        vault.rotate_signing_key(new, now).await?;
        anyhow::Ok(kid)
    }
    .await;
    repo.close().await;
    rotated
}

/// Applies the migrations of the configured database and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    open_repo(config).await?.close().await;
    Ok(())
}

/// Seals every stored secret under the master key in `new_key_file` (`authd keys rekey`);
/// returns how many. Nothing is written unless every secret opens with the current key.
pub async fn rekey(config: &Config, new_key_file: &std::path::Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(new_key_file)
        .with_context(|| format!("cannot read {}", new_key_file.display()))?;
    let new = MasterKey::parse(&text)
        .with_context(|| format!("the new master key in {}", new_key_file.display()))?;
    let repo = open_repo(config).await?;
    let resealed = Vault::unchecked(repo.clone(), config.master_key.clone())
        .rekey(&new)
        .await;
    repo.close().await;
    Ok(resealed?)
}

/// Opens the configured database and applies its migrations.
async fn open_repo(config: &Config) -> anyhow::Result<Repo> {
    Repo::connect(&config.database)
        .await
        .context("cannot open the database and apply its migrations (DATABASE_URL)")
}

/// Asks a running authd at `addr` for `GET /healthz`; `Ok` on a `200`. An unspecified listen
/// address (`0.0.0.0`, `[::]`) is reached through the loopback interface.
pub async fn healthcheck(mut addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if addr.ip().is_unspecified() {
        let loopback: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), probe)
        .await
        .with_context(|| format!("no answer from {addr} within 3 s"))?
        .with_context(|| format!("cannot reach {addr}"))?;
    anyhow::ensure!(
        &head == b"HTTP/1.1 200",
        "{addr} is not healthy: {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
