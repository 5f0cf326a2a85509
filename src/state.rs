//! Application state handed to every handler; no globals.

use axum::extract::FromRef;

use crate::{http::clients::Clients, service::AuthService};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub auth: AuthService,
    pub clients: Clients,
}
