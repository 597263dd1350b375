//! The backend's own I/O thread.
//!
//! Every database operation runs as a task on a single-threaded tokio runtime that this
//! backend owns, where its pool's connections and its listener live. Callers only await the
//! task's handle, which works from any runtime: a worker whose handlers block all of its
//! runtime's threads can still renew leases from another thread.
//!
//! A backend on the application's pool ([`crate::PostgresOptions::from_pool`]) runs its
//! operations on that pool with [`run_here`] instead, on the caller's runtime: see
//! [`crate::PostgresBackend::from_pool`] for why.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::PostgresError;

/// A runtime on a thread of its own; stops when dropped.
pub(crate) struct IoThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl IoThread {
    pub(crate) fn start() -> Result<IoThread, PostgresError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("kosh-jobs-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Dropping the runtime cancels the listener and whatever still runs.
            })
            .map_err(PostgresError::Thread)?;
        let handle = ready_rx
            .recv()
            .map_err(|_| PostgresError::Stopped)?
            .map_err(PostgresError::Thread)?;
        Ok(IoThread {
            handle,
            stop: Some(stop_tx),
        })
    }

    /// The runtime's handle, to spawn long-lived tasks (the listener) on it.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the I/O thread; the result can be awaited from anywhere.
    pub(crate) fn run<T, F>(&self, fut: F) -> impl Future<Output = Result<T, PostgresError>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PostgresError>> + Send + 'static,
    {
        join(self.handle.spawn(fut))
    }
}

/// Runs `fut` as a task of the runtime that polls the returned future (the caller's), so it
/// goes on when the caller stops waiting, as a task of the I/O thread does;
/// [`PostgresError::NoRuntime`] outside of a tokio runtime.
pub(crate) async fn run_here<T, F>(fut: F) -> Result<T, PostgresError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, PostgresError>> + Send + 'static,
{
    let handle = Handle::try_current().map_err(|_| PostgresError::NoRuntime)?;
    join(handle.spawn(fut)).await
}

/// The result of an operation's task.
async fn join<T>(task: JoinHandle<Result<T, PostgresError>>) -> Result<T, PostgresError> {
    match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(PostgresError::Panicked(e.to_string())),
        Err(_) => Err(PostgresError::Stopped),
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
