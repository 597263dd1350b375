// Payload patterns, raw identifiers, and the default name being the function's.
use kosh_jobs::{Job, JobContext, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

#[kosh_jobs::job]
async fn resize(Resize { image, width }: Resize, _: JobContext<()>) -> Result<u32, JobError> {
    Ok(image.len() as u32 * width)
}

#[derive(Serialize, Deserialize)]
struct Keyword {
    n: u32,
}

#[kosh_jobs::job]
async fn r#match(mut job: Keyword) -> Result<(), JobError> {
    job.n += 1;
    assert!(job.n > 0);
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Renamed;

// Two jobs in one module with different names are fine.
#[kosh_jobs::job(name = "resize.v0")]
async fn old_resize(_: Renamed) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    assert_eq!(Resize::NAME, "resize");
    assert_eq!(Keyword::NAME, "match");
}
