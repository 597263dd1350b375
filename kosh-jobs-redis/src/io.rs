//! The backend's own I/O thread.
//!
//! Every Redis operation runs as a task on a single-threaded tokio runtime that this backend
//! owns. Callers only await the task's handle, which works from any runtime (or none busy):
//! a worker whose handlers block all of its runtime's threads can still renew leases from
//! another thread, because nothing here needs the caller's runtime to make progress.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::RedisError;

/// A runtime on a thread of its own; stops when dropped.
pub(crate) struct IoThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl IoThread {
    pub(crate) fn start() -> Result<IoThread, RedisError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("kosh-jobs-redis".into())
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
                // Dropping the runtime here cancels whatever is still running.
            })
            .map_err(RedisError::Thread)?;
        let handle = ready_rx
            .recv()
            .map_err(|_| RedisError::Stopped)?
            .map_err(RedisError::Thread)?;
        Ok(IoThread {
            handle,
            stop: Some(stop_tx),
        })
    }

    /// The I/O thread's runtime.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the I/O thread; the result can be awaited from anywhere.
    pub(crate) fn run<T, F>(&self, fut: F) -> impl Future<Output = Result<T, RedisError>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, RedisError>> + Send + 'static,
    {
        let task = self.handle.spawn(fut);
        async move {
            match task.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(RedisError::Command(
                    format!("redis backend task panicked: {e}").into(),
                )),
                Err(_) => Err(RedisError::Stopped),
            }
        }
    }
}

impl IoThread {
    /// Starts `fut` on the I/O thread without waiting for it.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(fut));
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
