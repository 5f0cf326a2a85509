//! authd: a self-hosted user-authentication service.
//!
//! A request flows one way: [`http`] handler → [`service`] logic → [`repo`] → database.
//! [`auth`] holds the credential code the service uses, [`domain`] the parsed types every
//! layer shares, [`mail`] the SMTP transport and the mails authd writes. [`admin`] has
//! the operator's commands (`authd users ...`).

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod mail;
pub mod repo;
pub mod service;
pub mod startup;
pub mod telemetry;
