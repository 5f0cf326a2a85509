//! authd: a self-hosted user-authentication service.
//!
//! A request flows one way: [`http`] handler → [`service`] logic → [`repo`] → database.

pub mod allocator;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod repo;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
