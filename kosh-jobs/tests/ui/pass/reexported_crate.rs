// `crate = "..."`: kosh_jobs reached through a re-export, e.g. from an app's own prelude.
mod platform {
    pub mod jobs {
        pub use kosh_jobs;
    }
}

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Report;

#[kosh_jobs::job(crate = "crate::platform::jobs::kosh_jobs", queue = "reports")]
async fn report(_: Report) -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    use kosh_jobs::Job;
    assert_eq!(Report::QUEUE, "reports");
}
