//! The backend's own I/O thread.
//!
//! Every database operation runs as a task on a single-threaded tokio runtime that this
//! backend owns, where its pool's connections and its listener live. Callers only await the
//! task's handle, which works from any runtime: a worker whose handlers block all of its
//! runtime's threads can still renew leases from another thread.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

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
        let task = self.handle.spawn(fut);
        async move {
            match task.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(PostgresError::Panicked(e.to_string())),
                Err(_) => Err(PostgresError::Stopped),
            }
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
