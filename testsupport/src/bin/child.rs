//! A second process for tests that cross processes:
//!
//! - `kosh-jobs-test-child worker URL`: runs a worker for [`Double`] until its standard input
//!   closes (the test holds the pipe; it closes when the test ends or dies);
//! - `kosh-jobs-test-child wait URL ID`: waits for job `ID` and prints its typed result, or
//!   `error: …` and exits with 1;
//! - `kosh-jobs-test-child events URL QUEUE`: subscribes to the queue's lifecycle events,
//!   prints `subscribed`, then one line per event (`<id> <kind>`, or `missed <n>`) until its
//!   standard input closes.

use std::io::Read;

use kosh_jobs::prelude::*;
use kosh_jobs_testsupport::jobs::Double;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        println!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["worker", url] => {
            let backend = kosh_jobs::connect(url).await?;
            let worker = Worker::builder(backend)
                .register::<Double>()
                .build()?
                .spawn();
            println!("ready");
            // Until the parent closes the pipe.
            tokio::task::spawn_blocking(|| {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
            })
            .await?;
            worker.shutdown().await?;
            Ok(())
        }
        ["wait", url, id] => {
            let backend = kosh_jobs::connect(url).await?;
            let id = JobId::new(id.parse()?);
            let doubled = Client::new(backend).handle::<Double>(id).wait().await?;
            println!("result: {doubled}");
            Ok(())
        }
        ["events", url, queue] => {
            use kosh_jobs::events::{Event, EventFilter};
            use std::io::Write;
            let backend = kosh_jobs::connect(url).await?;
            let mut sub = Client::new(backend)
                .subscribe(EventFilter::Queue((*queue).to_owned()))
                .await?;
            println!("subscribed");
            let stdin_closed = tokio::task::spawn_blocking(|| {
                let _ = std::io::stdin().read_to_end(&mut Vec::new());
            });
            tokio::pin!(stdin_closed);
            let mut missed = 0;
            loop {
                tokio::select! {
                    e = sub.next() => match e {
                        Some(Event::Job(e)) => println!("{} {}", e.id, e.kind),
                        Some(Event::Missed { .. }) => {
                            missed += 1;
                            println!("missed {missed}");
                        }
                        None => return Err("the event feed ended".into()),
                    },
                    _ = &mut stdin_closed => return Ok(()),
                }
                std::io::stdout().flush()?;
            }
        }
        _ => Err("usage: kosh-jobs-test-child worker URL | wait URL ID | events URL QUEUE".into()),
    }
}
