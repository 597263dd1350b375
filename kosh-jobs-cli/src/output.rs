//! How results are printed: JSON documents, or tables for people, in colour only on a
//! terminal and never with `NO_COLOR`.

use std::io::{IsTerminal, Write};

use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use crossterm::style::Stylize;
use kosh_jobs::admin::json::{JobJson, TimeFormat};
use kosh_jobs::{JobRecord, JobState};
use serde_json::Value;

use crate::error::CliError;

/// Where and how to print.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Out {
    pub(crate) json: bool,
    pub(crate) color: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Out {
        Out {
            json,
            color: !json && color_allowed(std::io::stdout().is_terminal()),
        }
    }

    /// Prints one JSON document.
    pub(crate) fn json(&self, value: &Value) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))?;
        line(&text)
    }

    /// A table with these column headers.
    pub(crate) fn table(&self, headers: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_style(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        if self.color {
            t.enforce_styling();
            t.set_header(headers.iter().map(|h| Cell::new(h).fg(Color::DarkGrey)));
        } else {
            t.force_no_tty();
            t.set_header(headers.iter().copied());
        }
        t
    }

    /// A table without a header (label / value rows).
    pub(crate) fn plain_table(&self) -> Table {
        let mut t = Table::new();
        t.load_style(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        if self.color {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        t
    }

    /// A state, coloured by what it means.
    pub(crate) fn state_cell(&self, state: JobState) -> Cell {
        let cell = Cell::new(state.as_str());
        if !self.color {
            return cell;
        }
        cell.fg(match state {
            JobState::Scheduled => Color::Blue,
            JobState::Ready => Color::Cyan,
            JobState::Running => Color::Yellow,
            JobState::Completed => Color::Green,
            JobState::Failed => Color::Red,
            JobState::Cancelled => Color::DarkGrey,
        })
    }

    /// A state's name, coloured as in tables.
    pub(crate) fn state(&self, state: JobState) -> String {
        if !self.color {
            return state.as_str().to_owned();
        }
        let s = state.as_str();
        match state {
            JobState::Scheduled => s.blue().to_string(),
            JobState::Ready => s.cyan().to_string(),
            JobState::Running => s.yellow().to_string(),
            JobState::Completed => s.green().to_string(),
            JobState::Failed => s.red().to_string(),
            JobState::Cancelled => s.dark_grey().to_string(),
        }
    }

    /// Bold text (a title), when colour is on.
    pub(crate) fn bold(&self, text: &str) -> String {
        if self.color {
            text.bold().to_string()
        } else {
            text.to_owned()
        }
    }

    /// Dim text (a hint), when colour is on.
    pub(crate) fn dim(&self, text: &str) -> String {
        if self.color {
            text.dark_grey().to_string()
        } else {
            text.to_owned()
        }
    }

    /// Red text (an error), when colour is on.
    pub(crate) fn red(&self, text: &str) -> String {
        if self.color {
            text.red().to_string()
        } else {
            text.to_owned()
        }
    }
}

/// A table as text: two spaces between columns, none at the edges.
pub(crate) fn render(mut t: Table) -> String {
    let n = t.column_count();
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, if i + 1 == n { 0 } else { 2 }));
    }
    t.trim_fmt()
}

/// Whether colour may be used on a stream: only on a terminal, never with `NO_COLOR` set
/// (to anything), never with `TERM=dumb`.
pub(crate) fn color_allowed(is_terminal: bool) -> bool {
    is_terminal
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Prints a line on stdout; a closed pipe (`| head`) ends quietly.
pub(crate) fn line(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::Failed(format!("cannot write to stdout: {e}"))),
    }
}

/// A job as JSON, times in RFC 3339, with its payload, progress and result; with `full`, its
/// history and all errors too.
pub(crate) fn job_json(j: &JobRecord, full: bool) -> Value {
    JobJson::new(TimeFormat::Rfc3339)
        .payload(true)
        .outcome(true)
        .history(full)
        .to_value(j)
}

/// `text` cut to `max` characters, on one line.
pub(crate) fn short(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    kosh_jobs::admin::Total {
        count: n,
        exact: true,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colour_off_a_terminal() {
        assert!(!color_allowed(false));
    }

    #[test]
    fn shortening() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("a\nb", 5), "a b");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
