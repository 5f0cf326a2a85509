//! WAL checkpoints on a thread of their own, for a SQLite file.
//!
//! By default the connection whose commit takes the WAL past 1,000 pages copies them into the
//! database file and syncs it, inside that commit. authd writes through one connection, so
//! every write queued behind that commit (a refresh's rotation, a login's session) waited for
//! the copy and the `fsync`: about an eighth of the writer's time under a refresh load. Here a
//! thread checkpoints every [`INTERVAL`] as well, without blocking the writer (a passive
//! checkpoint copies what no reader still needs and never waits), so that when the writer's
//! own checkpoint comes due at [`WRITER_PAGES`], most pages are already copied and it is
//! short.
//!
//! The writer's checkpoint stays because only it restarts the WAL from its start: it runs
//! between two of the writer's transactions, with the whole WAL copied, and so keeps the file
//! small. With the thread alone the WAL grew to whatever limit was set (40 MB at 10,000
//! pages), and under a refresh load on a million users, p99 rose from 23 to 61 ms while
//! readers read their pages out of a long WAL.
//!
//! Durability is unchanged: with `synchronous=NORMAL` a commit is durable against power loss
//! once a checkpoint has synced it, which now happens within [`INTERVAL`] of the commit.

use std::{
    path::Path,
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

/// How often the thread checkpoints: often enough that each one is short (a long one takes
/// the core from the requests for its whole length; at 1 s, the refresh p99 tripled).
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint threshold, in pages (SQLite's default).
pub const WRITER_PAGES: u32 = 1_000;

/// The running checkpoint thread; it stops when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Opens a connection to the database file at `path` and starts checkpointing it.
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("authd-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self { _stop: stop })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// One passive checkpoint.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_moves_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=10000;
                 CREATE TABLE t (x BLOB);"
            ))
            .unwrap();
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (randomblob(4000))", [])
                .unwrap();
        }
        // The rows are in the WAL only: the database file has not grown to hold them.
        let file_size = || std::fs::metadata(&path).unwrap().len();
        assert!(file_size() < 50 * 4000, "{} bytes", file_size());

        let _checkpointer = Checkpointer::start(&path).unwrap();
        let deadline = std::time::Instant::now() + INTERVAL * 10;
        while file_size() < 50 * 4000 {
            assert!(std::time::Instant::now() < deadline, "not checkpointed");
            thread::sleep(INTERVAL / 10);
        }
    }
}
