// `async fn(payload, ctx: JobContext<App>)`: registers with workers whose state is `App`.
use kosh_jobs::{Handler, JobContext};
use serde::{Deserialize, Serialize};

#[derive(Clone)]
struct App {
    greeting: String,
}

#[derive(Serialize, Deserialize)]
struct ImportCsv {
    upload_id: i64,
}

#[kosh_jobs::job(queue = "csv-uploads", max_attempts = 5, backoff = exponential(2s, max = 10m), timeout = 15m)]
async fn import_csv(job: ImportCsv, ctx: JobContext<App>) -> Result<(), kosh_jobs::Error> {
    ctx.progress(serde_json::json!({ "upload": job.upload_id, "hi": ctx.state().greeting }))
        .await?;
    Ok(())
}

// The context's type may be written with its path.
#[derive(Serialize, Deserialize)]
struct Cleanup;

#[kosh_jobs::job]
async fn cleanup(_: Cleanup, ctx: ::kosh_jobs::JobContext<App>) -> Result<(), kosh_jobs::Error> {
    ctx.check_cancelled()
}

fn handles<J: Handler<App>>() {}

fn main() {
    handles::<ImportCsv>();
    handles::<Cleanup>();
}
