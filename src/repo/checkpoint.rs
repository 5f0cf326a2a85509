//! WAL checkpoints beside the writer, for a SQLite file.
//!
//! By default the connection whose commit takes the WAL past 1,000 pages copies them into the
//! database file and syncs it, inside that commit. authd writes through one connection, so
//! every write queued behind that commit (a refresh's rotation, a login's session) waits for
//! the copy and its `fsync`: under a refresh load, the slowest tenth of the requests.
//!
//! Here a task checkpoints every [`INTERVAL`] in two steps:
//!
//! 1. a passive checkpoint on a connection of its own, on a blocking thread: it copies
//!    everything committed so far and syncs, while the writer goes on committing;
//! 2. a passive checkpoint on the writer connection itself, between two writes: it copies
//!    only what was committed during step 1. Nothing can commit meanwhile, so afterwards the
//!    whole WAL is in the database file and the next write starts the WAL file over.
//!
//! Without step 2 the WAL would never be fully copied while writes keep coming, and would
//! grow until the writer's own checkpoint, kept as a backstop at [`BACKSTOP_PAGES`], found it.
//!
//! Durability is unchanged: with `synchronous=NORMAL` a commit survives a process crash at
//! once and a power loss once a checkpoint has synced it, now within about [`INTERVAL`].

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags};
use sqlx::SqlitePool;
use tokio::{task::AbortHandle, time::MissedTickBehavior};

/// How often the task checkpoints: often enough that each step is short (the copy takes the
/// core from the requests for its whole length).
pub const INTERVAL: Duration = Duration::from_millis(50);

/// The writer's own automatic checkpoint threshold, in pages (40 MB of WAL with 4 KiB pages):
/// reached only if the task falls far behind.
pub const BACKSTOP_PAGES: u32 = 10_000;

/// The running checkpoint task; it stops when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    task: AbortHandle,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one `PRAGMA wal_checkpoint` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Frames in the WAL.
    frames: i64,
    /// Of those, frames now in the database file.
    copied: i64,
}

impl Checkpointer {
    /// Opens a connection to the database file at `path` and starts checkpointing it beside
    /// `writer`, the pool of the one write connection, on the current Tokio runtime.
    pub fn start(path: &Path, writer: SqlitePool) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last = None;
            // The connection goes to the blocking thread for step 1 and comes back with it.
            let mut conn = conn;
            loop {
                tick.tick().await;
                let copy = tokio::task::spawn_blocking(move || {
                    let progress = passive(&conn);
                    (conn, progress)
                });
                let progress = match copy.await {
                    Ok((back, progress)) => {
                        conn = back;
                        progress
                    }
                    // The runtime is shutting down.
                    Err(_) => return,
                };
                let progress = match progress {
                    Ok(progress) => progress,
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        continue;
                    }
                };
                // Nothing committed since the last round, which left the WAL fully copied.
                let idle = last == Some(progress) && progress.frames == progress.copied;
                last = Some(progress);
                if progress.frames == 0 || idle {
                    continue;
                }
                if writer.is_closed() {
                    return;
                }
                if let Err(e) = finish(&writer).await {
                    if writer.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
                }
            }
        });
        Ok(Self {
            task: task.abort_handle(),
        })
    }
}

/// Step 2: copies what was committed during step 1, on the writer connection, so that
/// nothing commits meanwhile; the next write then starts the WAL file over.
async fn finish(writer: &SqlitePool) -> sqlx::Result<()> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(writer)
        .await
        .map(|_| ())
}

/// Step 1: a passive checkpoint, which copies what no reader still needs and never waits
/// for a lock.
fn passive(conn: &Connection) -> rusqlite::Result<Progress> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Progress {
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        writer: SqlitePool,
    }

    impl Fixture {
        /// A WAL database with a table, written through one connection as authd's is.
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.db");
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .pragma("wal_autocheckpoint", BACKSTOP_PAGES.to_string());
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            sqlx::query("CREATE TABLE t (x BLOB)")
                .execute(&writer)
                .await
                .unwrap();
            Self {
                _dir: dir,
                path,
                writer,
            }
        }

        /// Fifty commits of a page each.
        async fn write(&self) {
            for _ in 0..50 {
                sqlx::query("INSERT INTO t VALUES (randomblob(4000))")
                    .execute(&self.writer)
                    .await
                    .unwrap();
            }
        }

        fn db_len(&self) -> u64 {
            std::fs::metadata(&self.path).unwrap().len()
        }

        fn wal_len(&self) -> u64 {
            std::fs::metadata(self.path.with_extension("db-wal")).map_or(0, |m| m.len())
        }
    }

    #[tokio::test]
    async fn the_task_copies_the_wal_into_the_database_file() {
        let db = Fixture::new().await;
        db.write().await;
        // The rows are in the WAL only: the database file has not grown to hold them.
        assert!(db.db_len() < 50 * 4000, "{} bytes", db.db_len());

        let _checkpointer = Checkpointer::start(&db.path, db.writer.clone()).unwrap();
        let deadline = std::time::Instant::now() + INTERVAL * 40;
        while db.db_len() < 50 * 4000 {
            assert!(std::time::Instant::now() < deadline, "not checkpointed");
            tokio::time::sleep(INTERVAL / 5).await;
        }
    }

    /// Step 1, then commits as if made while it ran, then step 2 or not; returns the WAL's
    /// length before and after the next commits.
    async fn copy_while_writing(with_step_2: bool) -> (u64, u64) {
        let db = Fixture::new().await;
        let other = Connection::open(&db.path).unwrap();
        db.write().await;
        let copied = passive(&other).unwrap();
        assert_eq!(copied.frames, copied.copied, "{copied:?}");
        db.write().await;
        let wal = db.wal_len();
        if with_step_2 {
            finish(&db.writer).await.unwrap();
        }
        db.write().await;
        (wal, db.wal_len())
    }

    #[tokio::test]
    async fn writes_during_the_copy_do_not_keep_the_wal_growing() {
        // Fully copied, so the next commits reuse the WAL file from its start.
        let (before, after) = copy_while_writing(true).await;
        assert!(
            after <= before,
            "the WAL grew from {before} to {after} bytes"
        );
        // Without step 2 the WAL is never fully copied while commits keep coming.
        let (before, after) = copy_while_writing(false).await;
        assert!(after > before, "the WAL stayed at {before} bytes");
    }
}
