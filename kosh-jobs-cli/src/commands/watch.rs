//! `watch`: a refreshing view of the queues and the running jobs; JSON lines with `--json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::Cell;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use kosh_jobs::admin::{JobFilter, Order, SearchQuery};
use kosh_jobs::{JobRecord, JobState, Stats};
use serde_json::json;

use super::stats::{queue_json, snapshot, stats_table};
use super::Session;
use crate::args::WatchArgs;
use crate::error::{CliError, Context as _};
use crate::output::{line, render, short};
use crate::time;

/// How many running jobs a frame shows.
const RUNNING_SHOWN: usize = 20;

struct Frame {
    stats: Stats,
    running: Vec<JobRecord>,
}

async fn frame(s: &Session) -> Result<Frame, CliError> {
    let stats = snapshot(s).await?;
    let q = SearchQuery::new(JobFilter::new().state(JobState::Running))
        .order(Order::NewestFirst)
        .limit(RUNNING_SHOWN)
        .with_total(false);
    let running = s
        .admin
        .search(&q)
        .await
        .ctx(&s.target, "cannot list the running jobs")?
        .jobs;
    Ok(Frame { stats, running })
}

fn json_line(f: &Frame) -> String {
    json!({
        "at": time::iso(f.stats.at),
        "queues": f.stats.queues.iter().map(|q| queue_json(q, true)).collect::<Vec<_>>(),
        "workers": f.stats.workers.len(),
        "running": f.running.iter().map(|j| json!({
            "id": j.id.get(),
            "name": j.name,
            "queue": j.queue,
            "attempt": j.attempts,
            "started_at": j.started_at.map(time::iso),
            "progress": j.progress,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

fn text(s: &Session, f: &Frame, interactive: bool) -> String {
    let now = f.stats.at;
    let mut out = format!(
        "{}  {}  {}\n\n",
        s.out.bold("kosh-jobs watch"),
        s.target.describe(),
        s.out.dim(&format!(
            "{}{}",
            time::abs(now),
            if interactive { "  (q quits)" } else { "" }
        ))
    );
    if f.stats.queues.is_empty() {
        out.push_str("no queues yet\n");
    } else {
        out.push_str(&stats_table(s, &f.stats));
        out.push('\n');
    }
    let total_running: u64 = f.stats.queues.iter().map(|q| q.counts.running).sum();
    out.push_str(&format!(
        "\n{} live worker{}, {} running job{}\n",
        f.stats.workers.len(),
        if f.stats.workers.len() == 1 { "" } else { "s" },
        total_running,
        if total_running == 1 { "" } else { "s" },
    ));
    if !f.running.is_empty() {
        let mut t = s
            .out
            .table(&["ID", "QUEUE", "NAME", "ATTEMPT", "STARTED", "PROGRESS"]);
        for j in &f.running {
            t.add_row(vec![
                Cell::new(j.id),
                Cell::new(&j.queue),
                Cell::new(short(&j.name, 32)),
                Cell::new(format!("{}/{}", j.attempts, j.max_attempts)),
                Cell::new(
                    j.started_at
                        .map_or_else(|| "-".into(), |t| time::rel(t, now)),
                ),
                Cell::new(short(
                    &j.progress
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    40,
                )),
            ]);
        }
        out.push_str(&render(t));
        out.push('\n');
    }
    out
}

pub(super) async fn watch(s: &Session, a: &WatchArgs) -> Result<(), CliError> {
    let interactive =
        !s.out.json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if interactive {
        return watch_terminal(s, a).await;
    }
    let mut shown = 0u64;
    loop {
        let f = frame(s).await?;
        if s.out.json {
            line(&json_line(&f))?;
        } else {
            if shown > 0 {
                line("")?;
            }
            line(text(s, &f, false).trim_end())?;
        }
        shown += 1;
        if a.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(a.interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Puts the terminal back however the view ends.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen, CliError> {
        terminal::enable_raw_mode()
            .map_err(|e| CliError::Failed(format!("cannot set up the terminal: {e}")))?;
        let screen = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(|e| CliError::Failed(format!("cannot set up the terminal: {e}")))?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

/// Waits up to `d` for a key; `true` when it asks to quit (`q`, Esc, Ctrl-C).
async fn quit_key(d: Duration) -> Result<bool, CliError> {
    let got = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let deadline = std::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !event::poll(left)? {
                return Ok(false);
            }
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                    return Ok(true);
                }
            }
        }
    })
    .await
    .map_err(|e| CliError::Failed(format!("the key reader stopped: {e}")))?;
    got.map_err(|e| CliError::Failed(format!("cannot read the keyboard: {e}")))
}

async fn watch_terminal(s: &Session, a: &WatchArgs) -> Result<(), CliError> {
    let _screen = Screen::enter()?;
    let mut shown = 0u64;
    loop {
        let body = match frame(s).await {
            Ok(f) => text(s, &f, true),
            // A passing outage is shown, not fatal: the view retries at the next refresh.
            Err(e) => format!("{}\n", s.out.red(&e.to_string())),
        };
        let mut out = std::io::stdout().lock();
        let _ = execute!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        );
        // Raw mode: lines need an explicit carriage return.
        let _ = write!(out, "{}", body.replace('\n', "\r\n"));
        let _ = out.flush();
        drop(out);
        shown += 1;
        if a.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        if quit_key(a.interval).await? {
            return Ok(());
        }
    }
}
