//! The daemon: a durable, fair group queue over sessions, an HTTP API
//! (unix socket by default, TCP with a bearer token), server-sent events,
//! an OpenAPI document and Prometheus metrics. State lives in SQLite (WAL)
//! under the store, so a restart loses no accepted message.

mod api;
mod client;
mod client_ops;
mod config;
mod db;
mod metrics;
mod openapi;
mod scheduler;
mod serve;

pub use api::ROUTES;
pub use client::Client;
pub use client_ops::{message_body, shell_words};
pub use config::{Config, Runtime};
pub use db::{Db, Group, Message, FINAL_STATES};
pub use openapi::document as openapi_document;
pub use serve::{default_socket, open_state, serve, token, token_path, Listen};
