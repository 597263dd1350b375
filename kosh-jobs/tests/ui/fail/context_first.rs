use kosh_jobs::JobContext;

#[kosh_jobs::job]
async fn ping(ctx: JobContext<()>) -> Result<(), kosh_jobs::JobError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
