//! The queue registry: queue name ↔ queue index (the low 16 bits of a job id), cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kosh_jobs_core::Timestamp;
use redis::Value;

use crate::conn::{Conn, ScriptArgs};
use crate::decode::{array, req_int, req_text, text};
use crate::error::RedisError;
use crate::keys::{Keys, MAX_QUEUE_INDEX};
use crate::scripts;

/// How often `recover_expired` re-reads the registry to find queues of other processes.
const REFRESH_EVERY: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Cache {
    by_name: HashMap<String, u16>,
    by_index: HashMap<u16, String>,
    refreshed_at: Option<Timestamp>,
}

pub(crate) struct Registry {
    conn: Arc<Conn>,
    keys: Keys,
    cache: Mutex<Cache>,
}

fn lock(m: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub(crate) fn new(conn: Arc<Conn>, keys: Keys) -> Self {
        Registry {
            conn,
            keys,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn remember(&self, name: &str, index: u16) {
        let mut c = lock(&self.cache);
        c.by_name.insert(name.to_owned(), index);
        c.by_index.insert(index, name.to_owned());
    }

    /// The index of `queue`, registering it on first use.
    pub(crate) async fn index(&self, queue: &str) -> Result<u16, RedisError> {
        if let Some(i) = lock(&self.cache).by_name.get(queue) {
            return Ok(*i);
        }
        let mut args = ScriptArgs::with_capacity(1);
        args.str(queue);
        let v = self
            .conn
            .script(
                &scripts::REGISTER,
                &[&self.keys.queues(), &self.keys.queue_names()],
                args,
            )
            .await?;
        let i = req_int(&v, "queue index")?;
        let i = u16::try_from(i)
            .ok()
            .filter(|i| u64::from(*i) <= MAX_QUEUE_INDEX && *i > 0)
            .ok_or_else(|| RedisError::Protocol(format!("queue index {i} out of range")))?;
        self.remember(queue, i);
        Ok(i)
    }

    /// The name of the queue with this index, if any.
    pub(crate) async fn name(&self, index: u16) -> Result<Option<String>, RedisError> {
        if let Some(n) = lock(&self.cache).by_index.get(&index) {
            return Ok(Some(n.clone()));
        }
        let v = self
            .conn
            .query(redis::cmd("HGET").arg(self.keys.queue_names()).arg(index))
            .await?;
        match v {
            Value::Nil => Ok(None),
            v => {
                let name = req_text(&v, "queue name")?;
                self.remember(&name, index);
                Ok(Some(name))
            }
        }
    }

    /// Every registered queue, read from Redis, sorted by name.
    pub(crate) async fn all(&self, now: Timestamp) -> Result<Vec<(String, u16)>, RedisError> {
        let v = self
            .conn
            .query(redis::cmd("HGETALL").arg(self.keys.queues()))
            .await?;
        let mut out = Vec::new();
        let items = array(v)?;
        let mut it = items.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let (Some(name), Some(i)) = (text(k), crate::decode::int(v)) else {
                continue;
            };
            if let Ok(i) = u16::try_from(i) {
                out.push((name, i));
            }
        }
        {
            let mut c = lock(&self.cache);
            for (name, i) in &out {
                c.by_name.insert(name.clone(), *i);
                c.by_index.insert(*i, name.clone());
            }
            c.refreshed_at = Some(now);
        }
        out.sort();
        Ok(out)
    }

    /// The queues to recover: the cached ones, re-read from Redis every few minutes so that
    /// queues only other processes use are covered too.
    pub(crate) async fn for_recovery(&self, now: Timestamp) -> Result<Vec<String>, RedisError> {
        let stale = match lock(&self.cache).refreshed_at {
            None => true,
            Some(t) => now >= t + REFRESH_EVERY || now < t,
        };
        if stale {
            return Ok(self.all(now).await?.into_iter().map(|(n, _)| n).collect());
        }
        let mut names: Vec<String> = lock(&self.cache).by_name.keys().cloned().collect();
        names.sort();
        Ok(names)
    }
}
