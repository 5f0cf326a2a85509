//! Direct read connections to the SQLite file, for the reads on the hot paths.
//!
//! sqlx runs each SQLite connection on its own thread, so every query is a hand-off to that
//! thread and back: two context switches that cost far more than a primary-key lookup. The
//! session check runs on every authenticated request and the refresh-token lookup on every
//! refresh, so they use these plain rusqlite connections on the calling thread instead. In
//! WAL mode a reader never waits for the writer, each read transaction sees every
//! transaction committed before it started, and a lookup takes microseconds. The
//! connections are `query_only`: every write goes through sqlx.

use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use uuid::Uuid;

use super::{
    api_keys::{KeyUser, KEY_USER},
    rows,
    sessions::{FIND_REFRESH, SESSION_USER},
    RefreshRecord, RepoResult,
};
use crate::domain::User;

/// How long a read waits on a lock. WAL readers wait only in rare cases (e.g. while another
/// process recovers the WAL index), and the wait holds a runtime thread, so it is kept short.
const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// How much of the database file the readers map into memory: every commit by another
/// connection empties a connection's page cache, and mapped pages need no `read()` each.
const MMAP_BYTES: i64 = 256 * 1024 * 1024;

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
    pub fn open(path: &Path, count: usize) -> RepoResult<Self> {
        let connections = (0..count.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn.pragma_update(None, "query_only", true)?;
                conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
                Ok(Mutex::new(conn))
            })
            .collect::<RepoResult<_>>()?;
        Ok(Self { connections })
    }

    /// A free connection if there is one, else waits for the first (each is held only for
    /// one group of lookups, so the wait is microseconds).
    pub(super) fn connection(&self) -> MutexGuard<'_, Connection> {
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
    /// belongs to that user, and the account is enabled; all read in one transaction, so the
    /// WAL index is locked and unlocked once for the whole group.
    pub fn session_users(&self, checks: &[(Uuid, Uuid)]) -> RepoResult<Vec<Option<User>>> {
        let conn = self.connection();
        let transaction = conn.unchecked_transaction()?;
        let mut statement = transaction.prepare_cached(SESSION_USER)?;
        let users = checks
            .iter()
            .map(|(session, user)| {
                statement
                    .query_row((session, user), |row| Ok(rows::session_user(row)))
                    .optional()?
                    .transpose()
                    .map(|found| found.map(|(_, user)| user))
            })
            .collect::<RepoResult<Vec<_>>>();
        drop(statement);
        // A read transaction ends the same way whether its reads succeeded or not.
        transaction.commit()?;
        users
    }

    /// A presented refresh token, by hash, with the state of its session and user.
    pub fn find_refresh(&self, token_hash: &[u8]) -> RepoResult<Option<RefreshRecord>> {
        let conn = self.connection();
        let mut statement = conn.prepare_cached(FIND_REFRESH)?;
        statement
            .query_row([token_hash], |row| Ok(rows::refresh_record(row)))
            .optional()?
            .transpose()
    }

    /// API keys by hash, each with its user ([`KEY_USER`]), in one read transaction.
    pub fn api_key_users(&self, hashes: &[[u8; 32]]) -> RepoResult<Vec<Option<KeyUser>>> {
        let conn = self.connection();
        let transaction = conn.unchecked_transaction()?;
        let mut statement = transaction.prepare_cached(KEY_USER)?;
        let found = hashes
            .iter()
            .map(|hash| {
                statement
                    .query_row([&hash[..]], |row| Ok(rows::key_user(row)))
                    .optional()?
                    .transpose()
            })
            .collect::<RepoResult<Vec<_>>>();
        drop(statement);
        transaction.commit()?;
        found
    }
}
