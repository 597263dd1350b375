//! The CSV-import app of kosh-jobs: a personal-finance web app where a user uploads a bank
//! statement as CSV, the web process answers at once and enqueues a job, and a worker
//! imports the rows, reporting progress and leaving a notification.
//!
//! - [`parse`]: reading bank exports (pure, unit tested with fixtures);
//! - [`import`]: the `#[job]` that imports one upload;
//! - [`db`]: the app's own tables (sqlx on SQLite or Postgres);
//! - [`queueing`]: an upload's import and its job, in one transaction when they share a
//!   Postgres database;
//! - [`web`]: the page and the JSON API (axum);
//! - [`backend`]: the job store chosen by URL; [`config`]: the environment;
//!   [`run`]: wiring it together; [`metrics`]: `/metrics` for Prometheus;
//!   [`words`]: counts and sizes in words; [`user`]: who an upload is for.
//!
//! See `README.md` beside this crate for running it.

pub mod backend;
pub mod config;
pub mod db;
pub mod import;
pub mod metrics;
pub mod parse;
pub mod queueing;
pub mod run;
pub mod user;
pub mod web;
pub mod words;
