//! Coalesced single enqueues.
//!
//! Many tasks that each enqueue one job at the same moment (a busy web process) would each
//! pay a script call. Instead, the first enqueue starts a task on the I/O thread that sends
//! it at once; the enqueues that arrive while that call is in flight wait, and the task sends
//! them together, as one batch, when the call returns, and so on until nobody waits. A lone
//! enqueue is therefore never held back, and under load the calls grow into batches by
//! themselves. Every job was checked by its own caller before it joined, and every caller
//! gets its own result: its id, `existing`, or (when the shared call fails) a copy of that
//! call's error.

use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use kosh_jobs_core::{Enqueued, NewJob};
use tokio::sync::oneshot;

use crate::error::RedisError;
use crate::ops::Shared;

/// Jobs sent per coalesced call at most; more waiting are sent by the next call.
pub(crate) const MAX_COALESCED: usize = 1000;

/// One caller's job and where its result goes.
pub(crate) struct Waiter {
    job: NewJob,
    reply: oneshot::Sender<Result<Enqueued, RedisError>>,
}

#[derive(Default)]
struct State {
    /// A task is sending (and will send what waits).
    busy: bool,
    waiting: Vec<Waiter>,
}

/// The enqueues waiting for a call, and whether a task is sending them.
#[derive(Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Coalescer {
    /// Queues `job`; the receiver gets its result. Returns `true` when no task is sending:
    /// the caller must then start [`send_waiting`] on the I/O thread.
    pub(crate) fn add(
        &self,
        job: NewJob,
    ) -> (bool, oneshot::Receiver<Result<Enqueued, RedisError>>) {
        let (reply, rx) = oneshot::channel();
        let mut s = lock(&self.state);
        s.waiting.push(Waiter { job, reply });
        let start = !s.busy;
        s.busy = true;
        (start, rx)
    }

    /// The next jobs to send, or `None` (and no longer busy) when nobody waits.
    fn take(&self) -> Option<Vec<Waiter>> {
        let mut s = lock(&self.state);
        if s.waiting.is_empty() {
            s.busy = false;
            return None;
        }
        let at = s.waiting.len().min(MAX_COALESCED);
        let rest = s.waiting.split_off(at);
        Some(std::mem::replace(&mut s.waiting, rest))
    }
}

/// Ends the sending task's turn if it stops early (cancelled with the I/O thread, or a
/// panic): the waiting callers are dropped, so they see an error instead of hanging, and the
/// next enqueue starts a new task.
struct Turn<'a> {
    coalescer: &'a Coalescer,
    done: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.done {
            let dropped = {
                let mut s = lock(&self.coalescer.state);
                s.busy = false;
                std::mem::take(&mut s.waiting)
            };
            drop(dropped);
        }
    }
}

/// Sends the waiting enqueues, a batch per call, until nobody waits.
pub(crate) async fn send_waiting(shared: Arc<Shared>) {
    let coalescer = &shared.coalescer;
    let mut turn = Turn {
        coalescer,
        done: false,
    };
    while let Some(batch) = coalescer.take() {
        if shared.conn.is_cluster() {
            // One call per queue (slot), each answering its own callers: a call that fails
            // fails only the jobs it carried.
            let mut groups: Vec<(String, Vec<Waiter>)> = Vec::new();
            for w in batch {
                match groups.iter_mut().find(|(q, _)| *q == w.job.queue) {
                    Some((_, g)) => g.push(w),
                    None => groups.push((w.job.queue.clone(), vec![w])),
                }
            }
            join_all(groups.into_iter().map(|(_, g)| send(&shared, g))).await;
        } else {
            send(&shared, batch).await;
        }
    }
    turn.done = true;
}

/// Sends `batch` as one push and answers each of its callers.
async fn send(shared: &Arc<Shared>, batch: Vec<Waiter>) {
    let (jobs, replies): (Vec<NewJob>, Vec<_>) =
        batch.into_iter().map(|w| (w.job, w.reply)).unzip();
    match shared.clone().push(jobs).await {
        Ok(results) if results.len() == replies.len() => {
            for (reply, r) in replies.into_iter().zip(results) {
                // The caller may have stopped waiting; its job is stored all the same.
                let _ = reply.send(Ok(r));
            }
        }
        Ok(results) => {
            let e = RedisError::Protocol(format!(
                "push: {} results for {} jobs",
                results.len(),
                replies.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.copy_for_caller()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.copy_for_caller()));
            }
        }
    }
}
