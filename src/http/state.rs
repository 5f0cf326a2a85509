//! Application state handed to every handler; no globals.

use std::sync::Arc;

use axum::extract::FromRef;

use super::clients::Clients;
use crate::service::AuthService;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub auth: AuthService,
    pub clients: Clients,
    pub public_url: PublicUrl,
}

/// The base URL clients reach authd at (`AUTHD_PUBLIC_URL`), without a trailing slash.
#[derive(Clone, Debug)]
pub struct PublicUrl(pub Arc<str>);
