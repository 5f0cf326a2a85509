//! Integration tests over real HTTP. Each test gets its own database: SQLite by default,
//! PostgreSQL with `TEST_DATABASE_URL=postgres://...` (CI runs both).

mod helpers;

mod abuse;
mod account;
mod api_keys;
mod bad_tokens;
mod contract;
mod cookie_mode;
mod email;
mod faults;
mod hardening;
mod load;
mod login;
mod logout;
mod mfa;
mod operations;
mod refresh;
mod register;
mod resource_server;
mod restart;
