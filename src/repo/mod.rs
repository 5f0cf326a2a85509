//! The repository: every SQL statement authd runs, on SQLite or PostgreSQL.
//!
//! Both backends run the same statement text (`$1`-style parameters work on both) through
//! runtime-checked `query_as` + `FromRow`; only the schema differs, in `migrations/<backend>/`.
//! [`with_pool!`] expands a body once per backend so that each gets its own concrete types.
//! Write transactions start with a write statement, so SQLite takes its write lock at once
//! (waiting on `busy_timeout`) instead of failing to upgrade a read snapshot.

mod batch;
mod checkpoint;
mod keys;
mod lookups;
mod pg_checkers;
mod rotations;
mod sessions;
mod sqlite_reader;
mod throttle;
mod users;

use std::{str::FromStr, time::Duration};

use secrecy::ExposeSecret;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    PgPool, SqlitePool,
};

pub use keys::StoredSigningKey;
pub use lookups::Lookups;
pub use rotations::Rotations;
pub use sessions::{NewSession, RefreshRecord, Rotation};
pub use users::{Credentials, NewUser};

use crate::config::{Backend, Config};

/// A connection pool to one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Db {
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
pub(crate) use with_pool;

/// Which unique constraint a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    Username,
    Email,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0:?} already taken")]
    Conflict(UniqueField),
    /// The database cannot be reached or has no free connection: worth retrying later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error(transparent)]
    Other(sqlx::Error),
    /// A query that several requests shared failed; its cause is logged once, where it failed.
    #[error("a shared query failed")]
    Shared { unavailable: bool },
    /// From a direct SQLite read connection.
    #[error(transparent)]
    Reader(rusqlite::Error),
}

impl From<sqlx::Error> for RepoError {
    fn from(err: sqlx::Error) -> Self {
        Self::from_sqlx(err)
    }
}

impl RepoError {
    fn from_sqlx(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                // Postgres names the constraint; SQLite names the column in its message.
                let names = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
                if names.contains("email") {
                    RepoError::Conflict(UniqueField::Email)
                } else if names.contains("username") {
                    RepoError::Conflict(UniqueField::Username)
                } else {
                    RepoError::Other(err)
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => RepoError::Unavailable(err),
            _ => RepoError::Other(err),
        }
    }
}

pub type RepoResult<T> = Result<T, RepoError>;

/// `SQLITE_BUSY` ("database is locked"), in any of its extended forms.
fn is_sqlite_busy(e: &dyn sqlx::error::DatabaseError) -> bool {
    const SQLITE_BUSY: i32 = 5;
    e.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
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

/// How long a request waits for a free connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Db {
    /// Opens a pool for `config.database_url`. A SQLite file is created when missing.
    pub async fn connect(config: &Config) -> RepoResult<Self> {
        let url = config.database_url.expose_secret();
        let db = match config.backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // With WAL, NORMAL loses no committed data on a process crash, only
                    // possibly the last transactions on power loss, and avoids an fsync per commit.
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    // With table statistics, SQLite would answer a grouped rotation (`UPDATE
                    // sessions ... FROM (VALUES ...)`) by scanning every session against a
                    // throwaway index on the few VALUES rows, instead of looking each one up by
                    // id: 60 ms a group at 100k sessions. No authd query needs such an index.
                    .pragma("automatic_index", "OFF")
                    // WAL checkpoints run beside the writer (`checkpoint`); a commit
                    // checkpoints only if they fall far behind.
                    .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string());
                let pool_options = SqlitePoolOptions::new()
                    // One connection: SQLite has one writer at a time anyway, and writers queued
                    // here wait in order instead of sleeping in SQLite's busy handler. The hot
                    // reads do not use this pool (see `Lookups`).
                    .max_connections(1)
                    // A file connection does not go stale; a ping per acquire is a wasted hop.
                    .test_before_acquire(false)
                    .acquire_timeout(ACQUIRE_TIMEOUT);
                // Processes starting together on a new file can find it locked while one of
                // them sets it up (WAL mode), a case where SQLite answers at once instead of
                // waiting on `busy_timeout`: a few retries, as for the migrations.
                let pool = retry_sqlite_startup(
                    || pool_options.clone().connect_with(options.clone()),
                    |e| matches!(e, sqlx::Error::Database(e) if is_sqlite_busy(&**e)),
                )
                .await?;
                Db::Sqlite(pool)
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?;
                Db::Postgres(pool)
            }
        };
        Ok(db)
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            // Postgres serialises concurrent migrators with an advisory lock. SQLite has none,
            // but each migration is one transaction: a process that loses the race to another
            // one starting on the same file rolls back, and on retry finds the work done.
            Db::Sqlite(pool) => {
                let migrator = sqlx::migrate!("migrations/sqlite");
                retry_sqlite_startup(|| migrator.run(pool), |_| true).await
            }
            Db::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await,
        }
    }

    /// `Ok` when the database answers a trivial query.
    pub async fn ping(&self) -> RepoResult<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .map_err(RepoError::from)
    }

    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_locked_sqlite_file_is_recognised_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .busy_timeout(Duration::ZERO);
        let err = sqlx::query("SELECT count(*) FROM sqlite_schema")
            .execute(&SqlitePool::connect_lazy_with(options))
            .await
            .unwrap_err();
        let sqlx::Error::Database(e) = err else {
            panic!("not a database error: {err:?}")
        };
        assert!(is_sqlite_busy(&*e), "{e:?}");
        holder.execute_batch("COMMIT").unwrap();
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
}
