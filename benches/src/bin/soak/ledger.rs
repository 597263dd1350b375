//! The record kept outside the system under test: the worker processes' execution logs,
//! read back and grouped per job key.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;

/// What a log line says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Start,
    Done,
    Fail,
}

/// One log line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line {
    pub(crate) event: Event,
    pub(crate) attempt: u32,
    pub(crate) pid: u32,
    pub(crate) ms: u64,
}

/// Every execution of every key, each key's lines in time order.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) by_key: HashMap<u64, Vec<Line>>,
    /// Lines that did not parse (a process killed mid-write would leave one).
    pub(crate) torn: u64,
    pub(crate) files: usize,
}

impl Ledger {
    /// Reads every `*.log` file of `dir`.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Ledger> {
        let mut ledger = Ledger::default();
        for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            ledger.files += 1;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            for l in text.lines() {
                match parse(l) {
                    Some((key, line)) => ledger.by_key.entry(key).or_default().push(line),
                    None => ledger.torn += 1,
                }
            }
        }
        for lines in ledger.by_key.values_mut() {
            lines.sort_by_key(|l| l.ms);
        }
        Ok(ledger)
    }

    /// The lines of `key` (none if it never ran).
    pub(crate) fn lines(&self, key: u64) -> &[Line] {
        self.by_key.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Executions started in total.
    pub(crate) fn starts(&self) -> u64 {
        self.by_key
            .values()
            .flatten()
            .filter(|l| l.event == Event::Start)
            .count() as u64
    }
}

fn parse(l: &str) -> Option<(u64, Line)> {
    let mut f = l.split_whitespace();
    let event = match f.next()? {
        "start" => Event::Start,
        "done" => Event::Done,
        "fail" => Event::Fail,
        _ => return None,
    };
    let key = f.next()?.parse().ok()?;
    let line = Line {
        event,
        attempt: f.next()?.parse().ok()?,
        pid: f.next()?.parse().ok()?,
        ms: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some((key, line))
}

/// How the execution that `start` began ended: the first `done` or `fail` line of the same
/// attempt in the same process after it.
pub(crate) fn end_of(lines: &[Line], start: &Line) -> Option<Line> {
    lines
        .iter()
        .find(|l| {
            l.event != Event::Start
                && l.attempt == start.attempt
                && l.pid == start.pid
                && l.ms >= start.ms
        })
        .copied()
}
