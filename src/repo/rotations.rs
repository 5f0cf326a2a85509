//! Refresh-token rotations, grouped ([`batch`]): concurrent refreshes of different sessions
//! share one statement and, on SQLite, one commit, instead of taking turns on the single
//! write connection one statement and one commit each.

use std::collections::HashSet;

use uuid::Uuid;

use super::{batch, Db, RepoResult, Rotation};

/// The rotation queue; cheap to clone. Its dispatcher ends with the last handle.
#[derive(Clone, Debug)]
pub struct Rotations {
    queue: batch::Queue<Rotation, bool>,
}

impl Rotations {
    /// Starts the dispatcher on the current Tokio runtime. SQLite has one writer, so one
    /// statement runs at a time; PostgreSQL runs two, on different connections.
    pub fn start(db: Db) -> Self {
        let in_flight = match db {
            Db::Sqlite(_) => 1,
            Db::Postgres(_) => 2,
        };
        let queue = batch::start(in_flight, move |pending| apply(db.clone(), pending));
        Self { queue }
    }

    /// Applies one rotation (see [`Db::rotate_refresh`]); `true` if it won.
    pub async fn rotate(&self, rotation: Rotation) -> RepoResult<bool> {
        batch::ask(&self.queue, rotation).await
    }
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
        let (rotations, replies): (Vec<_>, Vec<_>) =
            now.into_iter().map(|p| (p.query, p.reply)).unzip();
        match batch::with_timeout(db.rotate_refresh(&rotations)).await {
            Ok(won) => {
                let won: HashSet<Uuid> = won.into_iter().collect();
                for (rotation, reply) in rotations.iter().zip(replies) {
                    let _ = reply.send(Ok(won.contains(&rotation.session_id)));
                }
            }
            Err(err) => batch::fail_all(replies.into_iter(), &err, "refresh rotation"),
        }
    }
}
