//! The repository: every SQL statement authd runs, on SQLite or PostgreSQL, behind one
//! handle ([`Repo`]).
//!
//! Both backends run the same statement text (`$1`-style parameters work on both) through
//! runtime-checked queries; only the schema differs, in `migrations/<backend>/`. Each row
//! shape is mapped once ([`rows`]), whichever driver read it. [`with_pool!`] expands a body
//! once per backend so that each gets its own concrete types. Errors leave this module as
//! [`RepoError`], with no driver type in them.

pub mod api_keys;
mod batch;
mod checks;
mod error;
pub(crate) mod events;
mod keys;
mod mail;
mod mfa;
mod pg_checkers;
mod rotations;
mod rows;
mod sessions;
mod sqlite_reader;
mod throttle;
mod users;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};

pub use api_keys::{KeyUser, NewApiKey};
pub use error::{RepoError, RepoResult, UniqueField};
pub use keys::Resealed;
pub use mail::{FoundToken, MailEnd, NewMail, OutgoingMail};
pub use mfa::{Challenge, NewChallenge};
pub use sessions::{NewSession, RefreshRecord, Rotation};
pub use throttle::{Attempt, LockRule};
pub use users::{Credentials, NewUser, Profile};

use crate::config::{Backend, DatabaseUrl};
use pg_checkers::PgCheckers;
use sqlite_reader::SqliteReaders;

/// The one handle on storage: the connection pool, on SQLite the direct read connections,
/// and the dispatchers of the statements that concurrent requests share. Built once at
/// start ([`Repo::connect`]); cheap to clone. The dispatchers stop with the last clone.
#[derive(Clone, Debug)]
pub struct Repo {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    /// Direct read connections to the SQLite file; `None` on PostgreSQL.
    readers: Option<Arc<SqliteReaders>>,
    checks: checks::Queue,
    /// The grouped API-key checks.
    key_checks: checks::KeyQueue,
    rotations: rotations::Queue,
}

/// A connection pool to one of the two supported databases.
#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend `$db` is.
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::repo::Db::Sqlite($pool) => $body,
            $crate::repo::Db::Postgres($pool) => $body,
        }
    };
}
use with_pool;

/// Starts a transaction on `pool` that a cancelled caller cannot leave open.
///
/// sqlx's PostgreSQL driver counts a transaction as begun only once `BEGIN` has been
/// answered. A future dropped while it waits for that answer (a client that hung up, a
/// timeout) hands its connection back to the pool inside a transaction that nothing ends,
/// and whoever takes that connection next runs its statements in it, uncommitted (sqlx
/// issue 4393). Here the `BEGIN` runs on a task of its own, so it always completes; a
/// transaction that nobody waits for any more is then dropped, which rolls it back before
/// its connection is used again.
async fn begin<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> RepoResult<sqlx::Transaction<'static, DB>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|_| RepoError::other("a transaction could not begin"))?
        .map_err(RepoError::from)
}

/// How long a request waits for a free connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL connections in the pool, besides the session checkers' own.
const PG_POOL: u32 = 16;
/// PostgreSQL connections kept for the session and API-key checks: one for each of the two
/// dispatchers, which run one statement at a time.
const PG_CHECKERS: usize = 2;

impl Repo {
    /// Opens the database at `url` (creating a SQLite file when missing),
    /// applies the migrations, and starts the dispatchers on the current Tokio runtime.
    pub async fn connect(database: &DatabaseUrl) -> RepoResult<Self> {
        let url = database.expose();
        let (db, readers, checks, key_checks) = match database.backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?;
                create_private_file(options.get_filename())?;
                let pool = sqlite_pool(options.clone()).await?;
                let db = Db::Sqlite(pool);
                migrate(&db).await?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let readers = Arc::new(SqliteReaders::open(options.get_filename(), threads)?);
                let checks = checks::start_sqlite(readers.clone());
                let key_checks = checks::start_sqlite_keys(readers.clone());
                (db, Some(readers), checks, key_checks)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(PG_POOL)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options.clone())
                    .await?;
                let db = Db::Postgres(pool);
                migrate(&db).await?;
                let checkers = Arc::new(PgCheckers::new(options, PG_CHECKERS));
                let checks = checks::start_postgres(checkers.clone());
                let key_checks = checks::start_postgres_keys(checkers);
                (db, None, checks, key_checks)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                rotations: rotations::start(db.clone()),
                db,
                readers,
                checks,
                key_checks,
            }),
        })
    }

    /// `Ok` when the database answers a trivial query.
    pub async fn ping(&self) -> RepoResult<()> {
        with_pool!(self.db(), pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Connections of the pool: (open, idle). The session and API-key checks' own
    /// connections are not counted.
    pub fn pool_connections(&self) -> (u32, usize) {
        with_pool!(self.db(), pool => (pool.size(), pool.num_idle()))
    }

    /// Closes the pool; calls made afterwards fail as unavailable.
    pub async fn close(&self) {
        with_pool!(self.db(), pool => pool.close().await)
    }

    /// Runs `delete` (`$1`: a time, `$2`: a batch size) until it deletes less than a batch,
    /// so that no statement holds the database for long; returns how many rows went.
    async fn delete_in_batches(
        &self,
        delete: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> RepoResult<u64> {
        const BATCH: u64 = 1000;
        let mut total = 0;
        loop {
            let n = with_pool!(self.db(), pool => {
                sqlx::query(delete)
                    .bind(before)
                    .bind(BATCH as i64)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The direct readers; only called on SQLite, where they always exist.
    fn sqlite_readers(&self) -> &SqliteReaders {
        self.inner
            .readers
            .as_deref()
            .expect("a SQLite repository has direct readers")
    }

    fn key_checks(&self) -> &checks::KeyQueue {
        &self.inner.key_checks
    }

    fn checks(&self) -> &checks::Queue {
        &self.inner.checks
    }

    fn rotations(&self) -> &rotations::Queue {
        &self.inner.rotations
    }
}

/// Creates the SQLite file, if missing, readable and writable by its owner only. SQLite gives
/// the `-wal` and `-shm` files it creates next to it the same mode.
fn create_private_file(path: &std::path::Path) -> RepoResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RepoError::Other(Arc::new(e))),
    }
}

/// The pool of the one SQLite write connection.
async fn sqlite_pool(options: SqliteConnectOptions) -> RepoResult<SqlitePool> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses no committed data on a process crash, only possibly the last
        // transactions on power loss, and avoids an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        // With table statistics, SQLite would answer a grouped rotation (`UPDATE sessions ...
        // FROM (VALUES ...)`) by scanning every session against a throwaway index on the few
        // VALUES rows, instead of looking each one up by id. No authd query needs such an
        // index.
        .pragma("automatic_index", "OFF");
    let pool_options = SqlitePoolOptions::new()
        // One connection: SQLite has one writer at a time anyway, and writers queued here
        // wait in order instead of sleeping in SQLite's busy handler. The hot reads do not
        // use this pool (see `SqliteReaders`).
        .max_connections(1)
        // A file connection does not go stale; a ping per acquire is a wasted hop.
        .test_before_acquire(false)
        .acquire_timeout(ACQUIRE_TIMEOUT);
    // Processes starting together on a new file can find it locked while one of them sets it
    // up (WAL mode), a case where SQLite answers at once instead of waiting on
    // `busy_timeout`: a few retries, as for the migrations.
    retry_sqlite_startup(
        || pool_options.clone().connect_with(options.clone()),
        error::is_sqlite_busy,
    )
    .await
    .map_err(RepoError::from)
}

/// Applies the embedded migrations of this backend.
async fn migrate(db: &Db) -> RepoResult<()> {
    match db {
        // Postgres serialises concurrent migrators with an advisory lock. SQLite has none,
        // but each migration is one transaction: a process that loses the race to another one
        // starting on the same file rolls back, and on retry finds the work done.
        Db::Sqlite(pool) => {
            let migrator = sqlx::migrate!("migrations/sqlite");
            retry_sqlite_startup(|| migrator.run(pool), |_| true).await?
        }
        Db::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
    }
    Ok(())
}

/// Runs a start-up `step` on a SQLite file that other processes may be setting up at the same
/// moment, again up to three times (after 50, 100 and 150 ms) while its error is one to `retry`.
async fn retry_sqlite_startup<T, E, F, Fut>(mut step: F, retry: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Err(e) if attempt < 3 && retry(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            result => return result,
        }
    }
}

/// For tests that run on PostgreSQL only: `TEST_DATABASE_URL` if it names a PostgreSQL
/// server; else `None`, after saying why the test has nothing to do (`why`).
#[cfg(test)]
pub(crate) fn postgres_test_url(why: &str) -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"));
    if url.is_none() {
        eprintln!("runs on PostgreSQL (TEST_DATABASE_URL): {why}");
    }
    url
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use uuid::Uuid;

    use super::*;

    /// sqlx writes and rusqlite reads the same file: the same SQLite library, the same
    /// encoding of ids and times, and rows that map to the same values through either driver.
    #[tokio::test]
    async fn both_sqlite_drivers_read_one_file_alike() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("both.db").display());
        let repo = Repo::connect(&DatabaseUrl::parse(&url).unwrap())
            .await
            .unwrap();
        let Db::Sqlite(pool) = repo.db() else {
            unreachable!("a sqlite:// URL opens SQLite")
        };
        let readers = repo.sqlite_readers();

        let sqlx_version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(pool)
            .await
            .unwrap();
        let rusqlite_version: String = readers
            .connection()
            .query_row("SELECT sqlite_version()", [], |row| row.get(0))
            .unwrap();
        assert_eq!(sqlx_version, rusqlite_version, "one libsqlite3-sys");

        let now = Utc::now();
        let user = repo
            .insert_user(
                &NewUser {
                    id: Uuid::new_v4(),
                    username: "Alice",
                    username_normalized: "alice",
                    email: Some("alice@example.com"),
                    email_normalized: Some("alice@example.com"),
                    full_name: None,
                    password_hash: "$argon2id$not-checked-here",
                    created_at: now,
                },
                None,
            )
            .await
            .unwrap();
        let session_id = Uuid::new_v4();
        let token_hash = [7u8; 32];
        repo.create_session(
            &NewSession {
                id: session_id,
                user_id: user.id,
                token_hash: &token_hash,
                now,
                idle_expires_at: now + TimeDelta::hours(1),
                expires_at: now + TimeDelta::hours(2),
                ip: None,
                user_agent: None,
            },
            &crate::domain::NewEvent {
                user_id: user.id,
                kind: crate::domain::EventKind::LoginSucceeded,
                at: now,
                ip: None,
                user_agent: None,
            },
            None,
        )
        .await
        .unwrap();

        let through_sqlx = rows::refresh_record(
            &sqlx::query(sessions::FIND_REFRESH)
                .bind(&token_hash[..])
                .fetch_one(pool)
                .await
                .unwrap(),
        )
        .unwrap();
        let through_rusqlite = readers.find_refresh(&token_hash).unwrap().unwrap();
        assert_eq!(through_sqlx, through_rusqlite);
        assert_eq!(through_rusqlite.session_id, session_id);
        assert_eq!(through_rusqlite.user_id, user.id);
        assert_eq!(through_rusqlite.rotated_at, now);

        let checked = readers
            .session_users(&[(session_id, user.id), (session_id, Uuid::new_v4())])
            .unwrap();
        assert_eq!(checked, [Some(user.clone()), None]);
        assert_eq!(
            repo.session_user(session_id, user.id).await.unwrap(),
            Some(user)
        );
    }

    #[tokio::test]
    async fn start_up_steps_are_retried_three_times_and_only_for_the_errors_asked() {
        let calls = std::cell::Cell::new(0);
        let failing = || {
            calls.set(calls.get() + 1);
            std::future::ready(Err::<(), _>("locked"))
        };
        assert_eq!(retry_sqlite_startup(failing, |_| true).await, Err("locked"));
        assert_eq!(calls.get(), 4, "one attempt and three retries");

        calls.set(0);
        assert_eq!(
            retry_sqlite_startup(failing, |e| *e != "locked").await,
            Err("locked")
        );
        assert_eq!(calls.get(), 1, "an error not asked for is not retried");

        calls.set(0);
        let second_time_lucky = || {
            calls.set(calls.get() + 1);
            std::future::ready(if calls.get() < 2 {
                Err("locked")
            } else {
                Ok(7)
            })
        };
        assert_eq!(
            retry_sqlite_startup(second_time_lucky, |_| true).await,
            Ok(7)
        );
        assert_eq!(calls.get(), 2);
    }

    /// Requests cancelled while their transaction's `BEGIN` is on its way (here: polled once,
    /// then dropped) leave no transaction open on the connection: a write made through it
    /// afterwards is committed, and another connection sees it.
    #[tokio::test]
    async fn a_transaction_cancelled_while_it_begins_leaves_none_open() {
        let Some(url) = postgres_test_url("SQLite's driver ends such a transaction itself") else {
            return;
        };
        // One connection, so that the cancelled transactions and the write share it; no ping
        // when it is taken, so that one poll of a `begin` reaches the `BEGIN` itself.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect(&url)
            .await
            .unwrap();
        let observer = PgPool::connect(&url).await.unwrap();
        let table = format!("cancelled_begin_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE TABLE {table} (n INTEGER)"))
            .execute(&observer)
            .await
            .unwrap();

        for _ in 0..5 {
            // Polled once, as far as waiting for the answer to `BEGIN`, then dropped.
            let mut beginning = std::pin::pin!(begin(&pool));
            let polled = futures::poll!(beginning.as_mut());
            assert!(polled.is_pending(), "the transaction began within one poll");
        }
        sqlx::query(&format!("INSERT INTO {table} VALUES (1)"))
            .execute(&pool)
            .await
            .unwrap();
        let seen: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&observer)
            .await
            .unwrap();

        // Closing the pool ends any transaction left open, and with it the locks that the
        // `DROP` would wait for.
        pool.close().await;
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&observer)
            .await
            .unwrap();
        assert_eq!(seen, 1, "the write ran inside a transaction left open");
    }
}
