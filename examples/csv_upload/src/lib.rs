//! The CSV-import app of kosh-jobs: a personal-finance web app where a user uploads a bank
//! statement as CSV, the web process answers at once and enqueues a job, and a worker
//! imports the rows, reporting progress and leaving a notification.
//!
//! See `README.md` beside this crate for running it.

pub mod parse;
