//! Application state handed to every handler; no globals.

use axum::extract::FromRef;

use crate::{repo::Db, service::AuthService};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub auth: AuthService,
    pub db: Db,
}
