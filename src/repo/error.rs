//! The repository's error: what the layers above need to decide, with no driver type in it.

use std::{error::Error as StdError, fmt, sync::Arc};

/// A driver's error, kept for the log.
pub type Cause = Arc<dyn StdError + Send + Sync>;

/// Which unique constraint a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueField {
    Username,
    Email,
}

/// Why a repository call failed. `Clone`, so that every request of a shared statement can
/// be answered with the statement's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    #[error("{0:?} already taken")]
    Conflict(UniqueField),
    /// The database cannot be reached, has no free connection, is busy or locked, or did not
    /// answer in time: worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(Cause),
    /// Anything else: a bug, or data the repository cannot read.
    #[error("database error: {0}")]
    Other(Cause),
}

pub type RepoResult<T> = Result<T, RepoError>;

/// A cause with nothing but a message.
#[derive(Debug)]
pub(super) struct Message(pub &'static str);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Message {}

impl RepoError {
    pub(super) fn unavailable(why: &'static str) -> Self {
        Self::Unavailable(Arc::new(Message(why)))
    }

    pub(super) fn other(why: &'static str) -> Self {
        Self::Other(Arc::new(Message(why)))
    }

    /// A statement PostgreSQL aborted as a deadlock or serialization failure: it changed
    /// nothing and may run again.
    pub(super) fn was_aborted(&self) -> bool {
        let RepoError::Unavailable(cause) = self else {
            return false;
        };
        match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| POSTGRES_ABORTED.contains(&&*code)),
            _ => false,
        }
    }

    /// The statement did not answer within its timeout (see `batch::with_timeout`).
    pub(super) fn timed_out(&self) -> bool {
        matches!(self, RepoError::Unavailable(cause)
            if cause.downcast_ref::<Message>().is_some_and(|m| m.0 == TIMED_OUT))
    }
}

/// The cause of a statement that did not answer in time.
pub(super) const TIMED_OUT: &str = "the statement timed out";

/// SQLite's primary result codes that mean "try again later": `SQLITE_BUSY` and
/// `SQLITE_LOCKED`, in any of their extended forms.
pub(super) fn is_sqlite_busy_code(code: i32) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)
}

/// SQLite's primary result codes that mean the database cannot take the statement now, but
/// the request was fine: busy or locked, read-only (a file or volume made read-only under a
/// running server), an I/O error, a full disk, or a file that cannot be opened. The request
/// gets `503`; the operator's log says why.
pub(super) fn is_sqlite_unavailable_code(code: i32) -> bool {
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    is_sqlite_busy_code(code)
        || matches!(
            code & 0xff,
            SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN
        )
}

/// PostgreSQL's "serialization failure" and "deadlock detected": the statement was aborted
/// and changed nothing, so it may simply run again.
const POSTGRES_ABORTED: [&str; 2] = ["40001", "40P01"];

/// PostgreSQL SQLSTATEs of a server that is going away or cannot take the connection:
/// class 08 (connection exception), 57P01–57P03 (shutdown, crash, cannot connect now) and
/// 53300 (too many connections).
fn is_postgres_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "57P01" | "57P02" | "57P03" | "53300")
}

/// Whether a sqlx error is SQLite's "busy" or "locked".
pub(super) fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(is_sqlite_busy_code),
        _ => false,
    }
}

impl From<sqlx::Error> for RepoError {
    fn from(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                // PostgreSQL names the constraint; SQLite names the column in its message.
                let names = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
                if names.contains("email") {
                    return RepoError::Conflict(UniqueField::Email);
                }
                if names.contains("username") {
                    return RepoError::Conflict(UniqueField::Username);
                }
                false
            }
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                match code.parse::<i32>() {
                    // SQLite's codes are numbers, PostgreSQL's SQLSTATEs are not all numeric.
                    Ok(sqlite) if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
                        is_sqlite_unavailable_code(sqlite)
                    }
                    _ => is_postgres_unavailable(&code) || POSTGRES_ABORTED.contains(&&*code),
                }
            }),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => true,
            _ => false,
        };
        if unavailable {
            RepoError::Unavailable(Arc::new(err))
        } else {
            RepoError::Other(Arc::new(err))
        }
    }
}

impl From<rusqlite::Error> for RepoError {
    fn from(err: rusqlite::Error) -> Self {
        let busy = match &err {
            rusqlite::Error::SqliteFailure(e, _) => is_sqlite_unavailable_code(e.extended_code),
            _ => false,
        };
        if busy {
            RepoError::Unavailable(Arc::new(err))
        } else {
            RepoError::Other(Arc::new(err))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for RepoError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => e.into(),
            other => RepoError::Other(Arc::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{str::FromStr, time::Duration};

    use super::*;

    #[tokio::test]
    async fn a_locked_sqlite_file_is_unavailable_through_either_driver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();

        let options =
            sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .busy_timeout(Duration::ZERO);
        let err = sqlx::query("SELECT count(*) FROM sqlite_schema")
            .execute(&sqlx::SqlitePool::connect_lazy_with(options))
            .await
            .unwrap_err();
        assert!(is_sqlite_busy(&err), "{err:?}");
        assert!(matches!(RepoError::from(err), RepoError::Unavailable(_)));

        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.busy_timeout(Duration::ZERO).unwrap();
        let err = reader
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_err();
        assert!(matches!(RepoError::from(err), RepoError::Unavailable(_)));
        holder.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn busy_and_locked_are_recognised_in_their_extended_forms() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED, SQLITE_LOCKED_SHAREDCACHE.
        for code in [5, 517, 6, 262] {
            assert!(is_sqlite_busy_code(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE, SQLITE_READONLY.
        for code in [1, 2067, 8] {
            assert!(!is_sqlite_busy_code(code), "{code}");
        }
    }

    #[test]
    fn a_read_only_full_or_failing_sqlite_file_is_unavailable_not_a_bug() {
        // SQLITE_READONLY, SQLITE_READONLY_DBMOVED, SQLITE_IOERR_WRITE, SQLITE_FULL,
        // SQLITE_CANTOPEN, and busy as before.
        for code in [8, 1032, 778, 13, 14, 5] {
            assert!(is_sqlite_unavailable_code(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CONSTRAINT_UNIQUE, SQLITE_MISMATCH: the request's own fault.
        for code in [1, 2067, 20] {
            assert!(!is_sqlite_unavailable_code(code), "{code}");
        }
    }

    #[test]
    fn only_aborted_statements_and_timeouts_are_told_apart() {
        assert!(RepoError::unavailable(TIMED_OUT).timed_out());
        assert!(!RepoError::unavailable("busy").timed_out());
        assert!(!RepoError::other(TIMED_OUT).timed_out());
        assert!(!RepoError::unavailable(TIMED_OUT).was_aborted());
    }

    #[test]
    fn postgres_connection_failures_are_unavailable() {
        for state in ["08006", "08P01", "57P01", "57P02", "57P03", "53300"] {
            assert!(is_postgres_unavailable(state), "{state}");
        }
        for state in ["23505", "42P01", "40001", "57014"] {
            assert!(!is_postgres_unavailable(state), "{state}");
        }
    }
}
