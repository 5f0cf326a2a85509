//! Refresh-token rotations, grouped ([`batch`]): concurrent refreshes of different sessions
//! share one statement and, on SQLite, one commit, instead of taking turns on the single
//! write connection one statement and one commit each.

use std::collections::HashSet;

use uuid::Uuid;

use super::{batch, sessions::rotate_group, Db, Rotation};

pub type Queue = batch::Queue<Rotation, bool>;

/// Starts the dispatcher. SQLite has one writer, so one statement runs at a time; PostgreSQL
/// runs two, on different connections.
pub fn start(db: Db) -> Queue {
    let in_flight = match db {
        Db::Sqlite(_) => 1,
        Db::Postgres(_) => 2,
    };
    batch::start(in_flight, move |pending| apply(db.clone(), pending))
}

async fn apply(db: Db, mut pending: Vec<batch::Item<Rotation, bool>>) {
    // Two rotations of one session in one statement would be ambiguous. The later ones run
    // in the statements that follow, where the generation check decides between them as it
    // would have had they arrived a moment later.
    while !pending.is_empty() {
        let mut sessions = HashSet::with_capacity(pending.len());
        let (now, later): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|p| sessions.insert(p.query.session_id));
        pending = later;
        let rotations: Vec<Rotation> = now.iter().map(|p| p.query.clone()).collect();
        let mut result = batch::with_timeout(rotate_group(&db, &rotations)).await;
        // Two replicas' groups touching the same sessions in another order can deadlock on
        // PostgreSQL; the aborted statement changed nothing: once more.
        if result.as_ref().is_err_and(|e| e.was_aborted()) {
            result = batch::with_timeout(rotate_group(&db, &rotations)).await;
        }
        match result {
            Ok(won) => {
                let won: HashSet<Uuid> = won.into_iter().collect();
                for item in now {
                    let _ = item.reply.send(Ok(won.contains(&item.query.session_id)));
                }
            }
            Err(err) => batch::fail_all(now, &err, "refresh rotation"),
        }
    }
}
