// `Result<T, E>` with `T: Serialize + DeserializeOwned` stored as the result and read back; `E` any `Into<BoxError>`, or
// `JobError` for permanent failures; `Result` aliases with one or no arguments.
use kosh_jobs::{Handler, JobContext, JobError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Count {
    rows: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct Summary {
    total: u64,
}

#[kosh_jobs::job]
async fn count(job: Count) -> Result<Summary, JobError> {
    if job.rows.is_empty() {
        return Err(JobError::permanent("no rows"));
    }
    Ok(Summary {
        total: job.rows.iter().map(|&r| u64::from(r)).sum(),
    })
}

#[derive(Serialize, Deserialize)]
struct Fetch;

#[kosh_jobs::job]
async fn fetch(_: Fetch) -> anyhow::Result<String> {
    anyhow::bail!("not today")
}

#[derive(Serialize, Deserialize)]
struct Read;

#[kosh_jobs::job]
async fn read(_: Read, _ctx: JobContext<()>) -> std::io::Result<Vec<u8>> {
    Ok(vec![1, 2, 3])
}

#[derive(Serialize, Deserialize)]
struct Boxed;

type BoxedResult = Result<u8, Box<dyn std::error::Error + Send + Sync>>;

#[kosh_jobs::job]
async fn boxed(_: Boxed) -> BoxedResult {
    Err("boxed".into())
}

#[derive(Serialize, Deserialize)]
struct Text;

#[kosh_jobs::job]
async fn text(_: Text) -> Result<Box<str>, String> {
    Err(String::from("a string error"))
}

fn output<J: Handler<(), Output = T>, T>() {}

fn main() {
    output::<Count, Summary>();
    output::<Fetch, String>();
    output::<Read, Vec<u8>>();
    output::<Boxed, u8>();
    output::<Text, Box<str>>();
}
