//! Refresh-token rotations, grouped ([`batch`]): concurrent refreshes of different sessions
//! share one statement and, on SQLite, one commit, instead of taking turns on the single
//! write connection one statement and one commit each.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{batch, Db, RepoError, RepoResult, Rotation};

struct Pending {
    rotation: Rotation,
    reply: oneshot::Sender<RepoResult<bool>>,
}

/// The rotation queue; cheap to clone. Its dispatcher ends with the last handle.
#[derive(Clone, Debug)]
pub struct Rotations {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("session_id", &self.rotation.session_id)
            .finish_non_exhaustive()
    }
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
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { rotation, reply })
            .await
            .map_err(|_| RepoError::Shared { unavailable: false })?;
        answer
            .await
            .map_err(|_| RepoError::Shared { unavailable: false })?
    }
}

async fn apply(db: Db, mut pending: Vec<Pending>) {
    // Two rotations of one session in one statement would be ambiguous. The later ones run
    // in the statements that follow, where the generation check decides between them as it
    // would have had they arrived a moment later.
    while !pending.is_empty() {
        let mut sessions = HashSet::with_capacity(pending.len());
        let (now, later): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|p| sessions.insert(p.rotation.session_id));
        pending = later;
        let (rotations, replies): (Vec<_>, Vec<_>) =
            now.into_iter().map(|p| (p.rotation, p.reply)).unzip();
        match batch::with_timeout(db.rotate_refresh(&rotations)).await {
            Ok(won) => {
                let won: HashSet<Uuid> = won.into_iter().collect();
                for (rotation, reply) in rotations.iter().zip(replies) {
                    let _ = reply.send(Ok(won.contains(&rotation.session_id)));
                }
            }
            Err(err) => {
                let failure = batch::shared_failure(&err, "refresh rotation", replies.len());
                for reply in replies {
                    let _ = reply.send(Err(failure()));
                }
            }
        }
    }
}
