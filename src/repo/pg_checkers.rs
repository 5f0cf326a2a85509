//! Dedicated PostgreSQL connections for the per-request checks of sessions and API keys.
//!
//! Through the pool, each group of checks would cost three round trips: sqlx pings a
//! connection when it is acquired and again when it is released, around the one query that
//! matters. These connections belong to the check dispatchers alone and are used as they
//! are. One that fails or times out is dropped, and the next group opens a new one.
//!
//! Their statements are planned for each run (`plan_cache_mode=force_custom_plan`). By
//! default a connection settles, after a statement's first five runs, on one generic plan,
//! and makes a new one only when the table's statistics change: a plan settled on while the
//! tables were nearly empty (a new deployment) scanned them whole for every group as they
//! grew, wherever `ANALYZE` lagged or autovacuum was off. Planned per run, the plan follows
//! the tables' current size, which PostgreSQL reads even where no statistics were gathered.

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::{
    api_keys::{pg_key_users, KeyUser},
    batch,
    sessions::pg_session_users,
    RepoResult,
};
use crate::domain::User;

/// Runs `$read` with `$connection` bound to one of `$checkers`' connections (opened if
/// needed) under the statement timeout. A connection that fails, or is left mid-statement,
/// is dropped. A kept connection that fails at once (the server closed it since: a restart,
/// a failover, an administrator's `pg_terminate_backend`) is replaced and the read made once
/// more: a read changes nothing, so repeating it is safe.
macro_rules! on_checker {
    ($checkers:expr, $connection:ident => $read:expr) => {{
        let checkers: &PgCheckers = $checkers;
        let mut slot = checkers.slot().await;
        let mut kept = slot.is_some();
        loop {
            let work = async {
                let $connection = match slot.as_mut() {
                    Some(connection) => connection,
                    None => slot.insert(checkers.options.connect().await?),
                };
                $read.await
            };
            let result = batch::with_timeout(work).await;
            match result {
                Err(e) => {
                    *slot = None;
                    if kept && !e.timed_out() {
                        kept = false;
                        continue;
                    }
                    break Err(e);
                }
                ok => break ok,
            }
        }
    }};
}

pub struct PgCheckers {
    options: PgConnectOptions,
    connections: Vec<Mutex<Option<PgConnection>>>,
}

impl PgCheckers {
    /// `count` connections, opened when first needed.
    pub fn new(options: PgConnectOptions, count: usize) -> Self {
        Self {
            options: options.options([("plan_cache_mode", "force_custom_plan")]),
            connections: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// A free connection slot if there is one, else waits for the first.
    async fn slot(&self) -> MutexGuard<'_, Option<PgConnection>> {
        for slot in &self.connections {
            if let Ok(slot) = slot.try_lock() {
                return slot;
            }
        }
        self.connections[0].lock().await
    }

    /// The live sessions among `session_ids`, with their owners, on one of these connections.
    pub async fn session_users(&self, session_ids: &[Uuid]) -> RepoResult<Vec<(Uuid, User)>> {
        on_checker!(self, connection => pg_session_users(connection, session_ids))
    }

    /// The live API keys among `hashes`, each with its hash and enabled user.
    pub async fn key_users(&self, hashes: &[Vec<u8>]) -> RepoResult<Vec<(Vec<u8>, KeyUser)>> {
        on_checker!(self, connection => pg_key_users(connection, hashes))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::{postgres::PgPoolOptions, Connection, Executor};

    use super::*;
    use crate::repo::{migrate, postgres_test_url, sessions::SESSION_USERS, Db};

    /// The session check's plan on a connection that ran it while the tables held one row
    /// each (a new deployment's), after they have grown and were never analysed (autovacuum
    /// off or behind): it looks its rows up by key.
    #[tokio::test]
    async fn the_session_check_looks_rows_up_by_key_once_the_tables_grow() {
        let Some(admin_url) = postgres_test_url("the check connections are PostgreSQL's") else {
            return;
        };
        let admin = PgConnectOptions::from_str(&admin_url).unwrap();
        let name = format!("authd_plan_{}", Uuid::new_v4().simple());
        let mut server = admin.connect().await.unwrap();
        server
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let options = admin.clone().database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        migrate(&Db::Postgres(pool.clone())).await.unwrap();
        pool.execute(
            "INSERT INTO users (id, username, username_normalized, password_hash, created_at) \
             VALUES ('00000000-0000-0000-0000-000000000001', 'one', 'one', 'x', now()); \
             INSERT INTO sessions (id, user_id, generation, created_at, last_used_at, \
             rotated_at, idle_expires_at, expires_at) VALUES \
             ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', \
             0, now(), now(), now(), now() + interval '1 day', now() + interval '1 day')",
        )
        .await
        .unwrap();
        pool.close().await;

        let checkers = PgCheckers::new(options, 1);
        let mut connection = checkers.options.connect().await.unwrap();
        connection
            .execute(format!("PREPARE check_plan(UUID[]) AS {SESSION_USERS}").as_str())
            .await
            .unwrap();
        // Past the five runs after which a connection would settle on a generic plan.
        let run = "EXECUTE check_plan('{00000000-0000-0000-0000-000000000002}')";
        for _ in 0..6 {
            connection.execute(run).await.unwrap();
        }
        connection
            .execute(
                "INSERT INTO users (id, username, username_normalized, password_hash, created_at) \
                 SELECT gen_random_uuid(), 'u' || n, 'u' || n, 'x', now() \
                 FROM generate_series(1, 20000) n; \
                 INSERT INTO sessions (id, user_id, generation, created_at, last_used_at, \
                 rotated_at, idle_expires_at, expires_at) SELECT gen_random_uuid(), id, 0, now(), \
                 now(), now(), now() + interval '1 day', now() + interval '1 day' FROM users",
            )
            .await
            .unwrap();
        for _ in 0..6 {
            connection.execute(run).await.unwrap();
        }
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {run}"))
            .fetch_all(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        server
            .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan"),
            "the check scans a table:\n{plan}"
        );
        assert!(
            plan.contains("sessions_pkey") && plan.contains("users_pkey"),
            "the check does not look its rows up by key:\n{plan}"
        );
    }
}
