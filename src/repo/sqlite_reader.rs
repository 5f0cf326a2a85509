//! Direct read connections to the SQLite file, for the per-request session check.
//!
//! sqlx runs each SQLite connection on its own thread, so every query is a hand-off to that
//! thread and back: two context switches that cost far more than the primary-key lookup
//! itself. The session check runs on every authenticated request, so it instead uses these
//! plain connections on the calling thread. In WAL mode a reader never waits for a writer,
//! each statement sees every transaction committed before it started, and the lookup takes
//! microseconds. The connections are `query_only`: every write still goes through sqlx.

use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use rusqlite::{types::Type, Connection, OpenFlags, OptionalExtension, Row};
use uuid::Uuid;

use super::{sessions::FIND_REFRESH, RefreshRecord};
use crate::domain::User;

/// How long a read waits on a lock. WAL readers wait only in rare cases (e.g. while another
/// process recovers the WAL index), and the wait holds a runtime thread, so it is kept short.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// How much of the database file the readers map into memory.
const MMAP_BYTES: i64 = 256 * 1024 * 1024;

const SESSION_USER: &str =
    "SELECT u.id, u.username, u.email, u.full_name, u.created_at FROM sessions s \
     JOIN users u ON u.id = s.user_id \
     WHERE s.id = ?1 AND s.user_id = ?2 AND s.revoked_at IS NULL AND u.disabled_at IS NULL";

pub struct SqliteReaders {
    connections: Vec<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("connections", &self.connections.len())
            .finish()
    }
}

impl SqliteReaders {
    /// Opens `count` read connections to the existing database file at `path`.
    pub fn open(path: &Path, count: usize) -> rusqlite::Result<Self> {
        let connections = (0..count.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn.pragma_update(None, "query_only", true)?;
                // Pages read through a memory map instead of a read() each: every commit by
                // another connection empties this connection's page cache.
                conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
                Ok(Mutex::new(conn))
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self { connections })
    }

    /// A free connection if there is one, else waits for the first (each is held only for
    /// one lookup, so the wait is microseconds).
    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connections
            .iter()
            .find_map(|c| c.try_lock().ok())
            .unwrap_or_else(|| {
                self.connections[0]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            })
    }

    /// For each `(session_id, user_id)`, the user behind that session if the session is live,
    /// belongs to that user, and the account is enabled; all read in
    /// one transaction: one lock and unlock of the WAL index for the whole group.
    pub fn session_users(&self, checks: &[(Uuid, Uuid)]) -> rusqlite::Result<Vec<Option<User>>> {
        let conn = self.connection();
        // BEGIN and COMMIT as cached statements: `Transaction` would parse them anew each time.
        conn.prepare_cached("BEGIN")?.execute([])?;
        let users = conn.prepare_cached(SESSION_USER).and_then(|mut statement| {
            checks
                .iter()
                .map(|(session, user)| {
                    // As borrowed blobs: rusqlite binds a `Uuid` through a copy of its bytes.
                    let key = (&session.as_bytes()[..], &user.as_bytes()[..]);
                    statement.query_row(key, read_user).optional()
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        });
        // Ending a read transaction is the same whether its reads succeeded or not.
        if let Err(e) = conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
        {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        users
    }

    /// A presented refresh token, by hash, with the state of its session and user.
    pub fn find_refresh(&self, token_hash: &[u8]) -> rusqlite::Result<Option<RefreshRecord>> {
        let conn = self.connection();
        let mut statement = conn.prepare_cached(FIND_REFRESH)?;
        statement
            .query_row([token_hash], |row| {
                Ok(RefreshRecord {
                    session_id: row.get(0)?,
                    token_generation: row.get(1)?,
                    current_generation: row.get(2)?,
                    user_id: row.get(3)?,
                    username: row.get(4)?,
                    rotated_at: time(row, 5)?,
                    idle_expires_at: time(row, 6)?,
                    expires_at: time(row, 7)?,
                    revoked_at: optional_time(row, 8)?,
                    disabled_at: optional_time(row, 9)?,
                })
            })
            .optional()
    }
}

/// A row of [`SESSION_USER`].
fn read_user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        email: row.get(2)?,
        full_name: row.get(3)?,
        created_at: time(row, 4)?,
    })
}

/// A time column as sqlx writes it on SQLite: RFC 3339 text.
fn time(row: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    optional_time(row, i)?.ok_or(rusqlite::Error::InvalidColumnType(
        i,
        "time".to_owned(),
        Type::Null,
    ))
}

fn optional_time(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    // Read in place: the text is parsed, never kept.
    let Some(text) = row.get_ref(i)?.as_str_or_null()? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|at| Some(at.with_timezone(&Utc)))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}
