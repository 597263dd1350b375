use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Upload {
    id: u64,
}

#[kosh_jobs::job(unique = "upload-{}")]
async fn upload(_: Upload) -> Result<(), kosh_jobs::JobError> {
    Ok(())
}

fn main() {}
