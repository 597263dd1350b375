//! Fixture files read as the import job reads them, for the parsing tests (`dialects.rs`,
//! `banks.rs`).
// Each test binary uses part of it.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use chrono::NaiveDate;
use csv_upload::parse::{CsvFile, DateOrder, Scan};

/// `tests/fixtures/NAME` of this crate (`NAME` may be in a folder: `banks/hdfc.csv`).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fixture read as the import job reads it.
pub struct Read {
    /// Its rows as `line date "description" cents`, or `line rejected: reason`.
    pub rows: Vec<String>,
    /// The first pass.
    pub scan: Scan,
    /// The file.
    pub file: CsvFile,
    /// The summary lines the second pass (reading the rows) skipped.
    pub summary_lines: u64,
}

/// Opens fixture `name`, scans it (`default`: the date order when the file does not decide
/// it; `today`: for dates without a year), then reads every row, checking that both passes
/// count the same rows.
pub fn read(name: &str, default: DateOrder, today: Option<NaiveDate>) -> Read {
    let file = CsvFile::open(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let scan = file.scan(default, || false).unwrap().unwrap();
    let mut rows = file.rows(file.data_start(), scan.dates(today)).unwrap();
    let mut out = Vec::new();
    while let Some(r) = rows.next_row().unwrap() {
        out.push(match r.outcome {
            Ok(t) => format!(
                "{} {} {:?} {}",
                r.line, t.date, t.description, t.amount_cents
            ),
            Err(reason) => format!("{} rejected: {reason}", r.line),
        });
    }
    assert_eq!(
        out.len() as u64,
        scan.rows_total,
        "{name}: scan and read agree"
    );
    Read {
        rows: out,
        summary_lines: rows.summary_lines(),
        scan,
        file,
    }
}
