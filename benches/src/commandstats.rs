//! Commands sent to Redis, from `INFO commandstats`: how many each kind, so a run can report
//! commands per job (what hosted Redis bills by).

use std::collections::BTreeMap;

/// Commands that are never run from inside a Lua script.
const TOP_LEVEL: &[&str] = &[
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
    "script",
    "function",
    "blpop",
    "brpop",
    "blmove",
    "blmpop",
    "brpoplpush",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "xread",
    "xreadgroup",
    "wait",
    "config",
    "client",
    "hello",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "subscribe",
    "ssubscribe",
    "psubscribe",
    "unsubscribe",
    "quit",
    "readonly",
    "cluster",
    "command",
];

/// Calls per command name (lowercase, e.g. `evalsha`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStats {
    /// Calls per command.
    pub calls: BTreeMap<String, u64>,
}

impl CommandStats {
    /// Parses the text of `INFO commandstats`: lines like
    /// `cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,rejected_calls=0,failed_calls=0`.
    pub fn parse(info: &str) -> CommandStats {
        let calls = info
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                let n = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), n))
            })
            .collect();
        CommandStats { calls }
    }

    /// What was called between `before` and `self`.
    pub fn since(&self, before: &CommandStats) -> CommandStats {
        let calls = self
            .calls
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v - before.calls.get(k).copied().unwrap_or(0).min(*v),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        CommandStats { calls }
    }

    /// Without the commands the bench's own probe sends (`info`, `ping`, `flushall`,
    /// `select`, `auth`), so what remains is the backend's traffic.
    pub fn without_probes(mut self) -> CommandStats {
        for probe in ["info", "ping", "flushall", "select", "auth", "hello"] {
            self.calls.remove(probe);
        }
        self
    }

    /// Commands only a client sends (script calls, blocking pops, connection and admin
    /// commands): the requests, each of which hosted Redis bills as one command. The rest of
    /// [`CommandStats::total`] ran inside Lua scripts, except data commands a client sent
    /// directly, which `INFO commandstats` cannot tell apart from those.
    pub fn requests(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(k, _)| TOP_LEVEL.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum()
    }

    /// All calls, including those made by Lua scripts.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The busiest commands, e.g. `evalsha 2000, blpop 3`.
    pub fn summary(&self, top: usize) -> String {
        let mut v: Vec<_> = self.calls.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .take(top)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=100,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=1,usec=5,usec_per_call=5.00\r\n";
    const AFTER: &str = "# Commandstats\r\ncmdstat_evalsha:calls=310,usec=100,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\ncmdstat_blpop:calls=2,usec=5,usec_per_call=2.50\r\ncmdstat_info:calls=2,usec=5,usec_per_call=5.00\r\n";

    #[test]
    fn counts_what_the_backend_sent() {
        let d = CommandStats::parse(AFTER)
            .since(&CommandStats::parse(BEFORE))
            .without_probes();
        assert_eq!(d.calls.get("evalsha"), Some(&300));
        assert_eq!(d.total(), 302);
        assert_eq!(d.requests(), 302);
        let mut with_inner = d.clone();
        with_inner.calls.insert("hset".into(), 600);
        assert_eq!((with_inner.requests(), with_inner.total()), (302, 902));
        assert_eq!(d.summary(5), "evalsha 300, blpop 2");
    }
}
