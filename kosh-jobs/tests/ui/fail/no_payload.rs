#[kosh_jobs::job(queue = "pings")]
async fn ping() -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
