//! One result line per scenario run, for people and for the README's table.

use std::time::Duration;

use kosh_jobs_benches::rss::format_kib;

/// What one scenario run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Row {
    pub(crate) backend: String,
    pub(crate) scenario: &'static str,
    pub(crate) concurrency: Option<usize>,
    pub(crate) jobs: u64,
    /// Enqueue rate (batched, or single awaited calls for the `enqueue` scenario).
    pub(crate) enqueue: Option<f64>,
    /// Processing rate.
    pub(crate) process: Option<f64>,
    pub(crate) p50: Option<Duration>,
    pub(crate) p99: Option<Duration>,
    pub(crate) rss_kib: Option<u64>,
    /// Peak RSS of the second process (multi-process runs).
    pub(crate) child_rss_kib: Option<u64>,
    /// Redis commands per job: (requests, all commands including those inside scripts).
    pub(crate) cmds_per_job: Option<(f64, f64)>,
    pub(crate) note: String,
}

pub(crate) fn rate(jobs: u64, took: Duration) -> f64 {
    jobs as f64 / took.as_secs_f64().max(1e-9)
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

impl Row {
    fn rss(&self) -> String {
        match self.child_rss_kib {
            Some(c) => format!("{} + {}", format_kib(self.rss_kib), format_kib(Some(c))),
            None => format_kib(self.rss_kib),
        }
    }

    /// One line for the terminal.
    pub(crate) fn human(&self) -> String {
        let mut parts = vec![format!(
            "{:<6} {:<12} {:<5} {:>7} jobs",
            self.backend,
            self.scenario,
            self.concurrency
                .map(|c| format!("c={c}"))
                .unwrap_or_default(),
            self.jobs
        )];
        if let Some(e) = self.enqueue {
            parts.push(format!("enqueue {} jobs/s", thousands(e)));
        }
        if let Some(p) = self.process {
            parts.push(format!("processing {} jobs/s", thousands(p)));
        }
        if let (Some(a), Some(b)) = (self.p50, self.p99) {
            parts.push(format!("pickup p50 {} p99 {}", ms(a), ms(b)));
        }
        parts.push(format!("peak RSS {}", self.rss()));
        if let Some((req, all)) = self.cmds_per_job {
            parts.push(format!(
                "redis per job: {req:.2} requests, {all:.2} commands incl. in scripts"
            ));
        }
        if !self.note.is_empty() {
            parts.push(self.note.clone());
        }
        parts.join(" | ")
    }

    /// One row of the README's table (see [`HEADER`]).
    pub(crate) fn markdown(&self) -> String {
        let opt = |x: Option<f64>| x.map(thousands).unwrap_or_else(|| "–".into());
        let lat = match (self.p50, self.p99) {
            (Some(a), Some(b)) => format!("{} / {}", ms(a), ms(b)),
            _ => "–".into(),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.backend,
            self.scenario,
            self.concurrency
                .map(|c| c.to_string())
                .unwrap_or("–".into()),
            thousands(self.jobs as f64),
            opt(self.enqueue),
            opt(self.process),
            lat,
            self.rss(),
            self.cmds_per_job
                .map(|(req, all)| format!("{req:.2} / {all:.2}"))
                .unwrap_or_else(|| "–".into()),
        )
    }
}

/// The header of [`Row::markdown`] rows.
pub(crate) const HEADER: &str = "| backend | scenario | concurrency | jobs | enqueue (jobs/s) | processing (jobs/s) | pickup p50 / p99 | peak RSS | Redis requests / commands per job |\n|---|---|---:|---:|---:|---:|---:|---:|---:|";
