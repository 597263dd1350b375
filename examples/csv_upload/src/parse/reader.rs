//! Streaming a bank export record by record, with positions to resume from.
//!
//! The file is read through a `BufReader`, never whole: memory stays flat whatever its size.
//! Quoted fields may hold the delimiter, quotes (`""`) and line breaks; the delimiter (`,`,
//! `;`, tab or `|`) is sniffed from the header line; a UTF-8 byte-order mark is skipped;
//! blank lines (also lines of bare delimiters, `;;;`) are skipped wherever they are; text
//! that is not valid UTF-8 is read as Latin-1 (Windows exports).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::amount::parse_amount;
use super::date::{parse_date, DateEvidence, DateOrder};
use super::header::{find_columns, AmountColumns, Columns, HeaderError};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A place in the file: the start of a record. Saved with each batch, so a redelivered job
/// seeks there instead of starting over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Byte offset.
    pub byte: u64,
    /// Line number (1-based) at that offset.
    pub line: u64,
    /// Records before it, the header included.
    pub record: u64,
}

/// One imported transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Booking date.
    pub date: NaiveDate,
    /// Description, payee and memo joined; line breaks become spaces.
    pub description: String,
    /// Signed amount in cents (negative: money out).
    pub amount_cents: i64,
}

/// A data row and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRow {
    /// The line (1-based) the record starts on.
    pub line: u64,
    /// The transaction, or why the row was rejected.
    pub outcome: Result<Transaction, String>,
    /// The record as read (for rejected rows), shortened.
    pub raw: String,
}

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Reading failed.
    #[error("cannot read the file")]
    Io(#[from] io::Error),
    /// The file has no records.
    #[error("the file is empty")]
    Empty,
    /// The header row is not usable.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The CSV reader failed.
    #[error("cannot read the file as CSV")]
    Csv(#[from] csv::Error),
}

impl OpenError {
    /// Whether trying again cannot help (the file itself is the problem).
    pub fn is_permanent(&self) -> bool {
        matches!(self, OpenError::Empty | OpenError::Header(_))
    }
}

/// What a first pass over the file learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Data rows (blank lines not counted).
    pub rows_total: u64,
    /// How to read `a/b/yyyy` dates in this file.
    pub date_order: DateOrder,
}

/// An opened bank export: its dialect and columns.
#[derive(Clone, Debug)]
pub struct CsvFile {
    path: PathBuf,
    delimiter: u8,
    columns: Columns,
    data_start: ResumePoint,
}

/// Finds the delimiter: the most frequent of `,` `;` tab `|` outside quotes on the first
/// line (`,` when none).
pub fn sniff_delimiter(first_bytes: &[u8]) -> u8 {
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for &b in first_bytes {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = candidates.iter().position(|c| *c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for i in 1..4 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
    }
}

fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.iter()
        .all(|f| f.iter().all(|b| b.is_ascii_whitespace()))
}

impl CsvFile {
    /// Opens `path`, sniffs its delimiter and finds its columns from the header row.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let mut head = Vec::with_capacity(64 * 1024);
        File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
        let body = head.strip_prefix(BOM).unwrap_or(&head);
        let delimiter = sniff_delimiter(body);
        let mut rdr = reader(File::open(path)?, delimiter);
        let mut rec = csv::ByteRecord::new();
        loop {
            if !rdr.read_byte_record(&mut rec)? {
                return Err(OpenError::Empty);
            }
            if !is_blank(&rec) {
                break;
            }
        }
        let header: Vec<String> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 {
                    f.strip_prefix(BOM).unwrap_or(f)
                } else {
                    f
                };
                decode(f).trim().to_owned()
            })
            .collect();
        let columns = find_columns(&header)?;
        let p = rdr.position();
        Ok(CsvFile {
            path: path.to_owned(),
            delimiter,
            columns,
            data_start: ResumePoint {
                byte: p.byte(),
                line: p.line(),
                record: p.record(),
            },
        })
    }

    /// The delimiter found.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The columns found.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// Where the data rows start.
    pub fn data_start(&self) -> ResumePoint {
        self.data_start
    }

    /// A first pass: counts the data rows and decides how to read ambiguous dates.
    /// `cancelled` is checked now and then; the pass stops early with `Ok(None)` when it
    /// says so.
    pub fn scan(&self, cancelled: impl Fn() -> bool) -> Result<Option<Scan>, OpenError> {
        let mut rows = self.rows(self.data_start, DateOrder::DayFirst)?;
        let mut evidence = DateEvidence::default();
        let mut rows_total = 0u64;
        let mut rec = csv::ByteRecord::new();
        while rows.rdr.read_byte_record(&mut rec)? {
            if is_blank(&rec) {
                continue;
            }
            rows_total += 1;
            if rows_total & 4095 == 0 && cancelled() {
                return Ok(None);
            }
            if let Some(d) = rec.get(self.columns.date) {
                evidence.observe(&decode(d));
            }
        }
        Ok(Some(Scan {
            rows_total,
            date_order: evidence.order(),
        }))
    }

    /// Reads data rows from `from` (the data start, or a saved [`ResumePoint`]).
    pub fn rows(&self, from: ResumePoint, order: DateOrder) -> Result<Rows, OpenError> {
        let mut rdr = reader(File::open(&self.path)?, self.delimiter);
        let mut pos = csv::Position::new();
        pos.set_byte(from.byte)
            .set_line(from.line)
            .set_record(from.record);
        rdr.seek(pos)?;
        Ok(Rows {
            rdr,
            rec: csv::ByteRecord::new(),
            columns: self.columns.clone(),
            delimiter: self.delimiter,
            order,
        })
    }
}

fn reader(file: File, delimiter: u8) -> csv::Reader<BufReader<File>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        // Records end at `\n`; a `\r` before it is whitespace that fields are trimmed of.
        // (With the default CRLF terminator a record would start at the `\n` of the line
        // before, and line numbers in CRLF files would be one short.)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(BufReader::with_capacity(64 * 1024, file))
}

/// Data rows of a [`CsvFile`], one at a time.
pub struct Rows {
    rdr: csv::Reader<BufReader<File>>,
    rec: csv::ByteRecord,
    columns: Columns,
    delimiter: u8,
    order: DateOrder,
}

impl Rows {
    /// The next data row, `None` at the end. Blank lines are skipped.
    pub fn next_row(&mut self) -> Result<Option<ParsedRow>, OpenError> {
        loop {
            if !self.rdr.read_byte_record(&mut self.rec)? {
                return Ok(None);
            }
            if is_blank(&self.rec) {
                continue;
            }
            let line = self.rec.position().map(|p| p.line()).unwrap_or(0);
            let outcome = parse_record(&self.rec, &self.columns, self.order);
            let raw = if outcome.is_err() {
                raw_text(&self.rec, self.delimiter)
            } else {
                String::new()
            };
            return Ok(Some(ParsedRow { line, outcome, raw }));
        }
    }

    /// Where the next row starts: save this to resume after the rows read so far.
    pub fn position(&self) -> ResumePoint {
        let p = self.rdr.position();
        ResumePoint {
            byte: p.byte(),
            line: p.line(),
            record: p.record(),
        }
    }
}

fn raw_text(rec: &csv::ByteRecord, delimiter: u8) -> String {
    let sep = (delimiter as char).to_string();
    let joined = rec.iter().map(decode).collect::<Vec<_>>().join(&sep);
    let joined = joined.trim_end_matches(['\r', '\n']);
    let mut out: String = joined.chars().take(300).collect();
    if joined.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// Turns one record into a transaction, or says why it cannot.
pub fn parse_record(
    rec: &csv::ByteRecord,
    columns: &Columns,
    order: DateOrder,
) -> Result<Transaction, String> {
    let field = |i: usize| -> Result<Cow<'_, str>, String> {
        rec.get(i).map(decode).ok_or_else(|| {
            format!(
                "row has {} fields, the header has {}",
                rec.len(),
                columns.width
            )
        })
    };
    let date = parse_date(&field(columns.date)?, order).map_err(|e| e.to_string())?;
    let amount_cents = match columns.amount {
        AmountColumns::Signed(i) => parse_amount(&field(i)?).map_err(|e| e.to_string())?,
        AmountColumns::DebitCredit { debit, credit } => {
            let side = |col: Option<usize>| -> Result<Option<i64>, String> {
                let Some(i) = col else { return Ok(None) };
                let raw = rec.get(i).map(decode).unwrap_or_default();
                if raw.trim().is_empty() {
                    return Ok(None);
                }
                parse_amount(&raw)
                    .map(|v| Some(v.abs()))
                    .map_err(|e| e.to_string())
            };
            match (side(debit)?, side(credit)?) {
                (None, None) => return Err("no amount: debit and credit are both empty".into()),
                (d, c) => c
                    .unwrap_or(0)
                    .checked_sub(d.unwrap_or(0))
                    .ok_or("amount is too large")?,
            }
        }
    };
    let mut description = String::new();
    for &i in &columns.description {
        let Some(v) = rec.get(i).map(decode) else {
            continue;
        };
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        if v.is_empty() {
            continue;
        }
        if !description.is_empty() {
            description.push_str(" · ");
        }
        description.push_str(&v);
    }
    Ok(Transaction {
        date,
        description,
        amount_cents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff_delimiter(b"Date;Amount;Payee\n1;2;3"), b';');
        assert_eq!(sniff_delimiter(b"Date,Amount,\"Payee; Name\"\n"), b',');
        assert_eq!(sniff_delimiter(b"\"a;b;c\",d\n"), b',');
        assert_eq!(sniff_delimiter(b"Date\tAmount\n"), b'\t');
        assert_eq!(sniff_delimiter(b"Date\n"), b',');
    }
}
