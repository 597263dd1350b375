//! A job whose handler holds its slot until the test lets it finish, and a worker of it
//! with a 1-second lease: what the tests of lease renewal under a starved pool run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kosh_jobs_core::{Handler, Job, JobContext, JobError, Worker};
use kosh_jobs_postgres::PostgresBackend;
use serde::{Deserialize, Serialize};

/// What the in-process handler of [`Held`] shares with the test.
#[derive(Clone)]
pub struct HeldState {
    pub starts: Arc<AtomicUsize>,
    pub finish: tokio::sync::watch::Receiver<bool>,
}

#[derive(Serialize, Deserialize)]
pub struct Held {}

impl Job for Held {
    type Output = ();
    const NAME: &'static str = "held";
    const QUEUE: &'static str = "held";
}

impl Handler<HeldState> for Held {
    async fn run(self, ctx: JobContext<HeldState>) -> Result<(), JobError> {
        let st = ctx.state();
        st.starts.fetch_add(1, Ordering::SeqCst);
        let mut finish = st.finish.clone();
        let _ = finish.wait_for(|f| *f).await;
        Ok(())
    }
}

/// A worker of [`Held`] jobs on `b` with a 1-second lease, until `stop` turns true.
pub fn held_worker(
    b: &PostgresBackend,
    state: HeldState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let worker = Worker::builder(b.clone())
        .state(state)
        .register::<Held>()
        .concurrency(1)
        .lease(Duration::from_secs(1))
        .build()
        .expect("worker");
    tokio::spawn(async move {
        worker
            .run_until(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .expect("worker run");
    })
}
