// The expansion needs no imports and does not care what the user's scope calls `Result`,
// `Option`, `String`, `Some`, `Ok`, `format` or `Duration`; it adds no warnings.
#![deny(warnings, missing_docs, unreachable_pub, unsafe_code, rust_2018_idioms)]
#![deny(non_local_definitions, dead_code)]
//! A crate with strict lints.

#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Some;
#[allow(dead_code)]
struct Duration;
#[allow(unused_macros)]
macro_rules! format {
    () => {};
}
#[allow(dead_code)]
type Result = ();

/// A public job type.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Tidy {
    id: u32,
}

/// A public handler.
#[kosh_jobs::job(unique = "tidy-{id}", timeout = 1m, backoff = fixed(1s))]
pub async fn tidy(job: Tidy) -> core::result::Result<(), kosh_jobs::JobError> {
    let _ = job.id;
    core::result::Result::Ok(())
}

fn main() {
    // A job declared inside a function body works too.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Local;

    #[kosh_jobs::job]
    async fn local(_: Local) -> core::result::Result<(), kosh_jobs::JobError> {
        core::result::Result::Ok(())
    }

    fn is_job<J: kosh_jobs::Job>() {}
    is_job::<Local>();
    is_job::<Tidy>();
}
