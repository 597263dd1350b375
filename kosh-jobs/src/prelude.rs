//! What a typical file using kosh-jobs needs: `use kosh_jobs::prelude::*;`.
//!
//! The traits whose methods are used without naming them (`Job` for `.with()`, `Backend`
//! for a backend's admin calls), the client, worker and handle types, the handler's context
//! and error, and the records an application reads.

pub use kosh_jobs_core::{
    AnyBackend, Backend, Client, Error, Handler, Job, JobContext, JobError, JobHandle, JobId,
    JobOptions, JobProgress, JobRecord, JobState, Worker,
};
#[cfg(feature = "macros")]
pub use kosh_jobs_derive::job;
