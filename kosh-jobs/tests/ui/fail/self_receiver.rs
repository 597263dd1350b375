use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Ping;

struct Service;

impl Service {
    #[kosh_jobs::job]
    async fn ping(&self, _: Ping) -> Result<(), kosh_jobs::JobError> {
        Ok(())
    }
}

fn main() {}
