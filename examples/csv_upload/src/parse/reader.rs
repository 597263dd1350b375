//! Streaming a bank export record by record, with positions to resume from.
//!
//! The file is read through a buffered reader, never whole: memory stays flat whatever its
//! size. Quoted fields may hold the delimiter, quotes (`""`) and line breaks; the encoding
//! is detected ([`super::encoding`]); the header row is looked for among the first
//! [`HEADER_SEARCH_RECORDS`] lines, below whatever preamble the bank writes (bank name,
//! account, period), with the delimiter (`,`, `;`, tab or `|`) it is written with; exports
//! known to have no header (Wells Fargo, HSBC) are recognised by the shape of their rows.
//! Blank and decoration lines are skipped wherever they are; summary and footer lines are
//! skipped and counted ([`super::summary`]).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::encoding::{detect, Source, TextEncoding};
use super::header::{find_columns, Columns, HeaderError};
use super::layout::headerless;
use super::order::{DateEvidence, DateOrder, DateReading, OrderBasis};
use super::row::{parse_fields, Transaction};
use super::summary::{Classifier, LineKind};

/// How many non-blank lines from the top may come before the header row.
pub const HEADER_SEARCH_RECORDS: usize = 40;

/// A place in the file: the start of a record. Saved with each batch, so a redelivered job
/// seeks there instead of starting over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Byte offset (of the UTF-8 text, for a UTF-16 file).
    pub byte: u64,
    /// Line number (1-based) at that offset.
    pub line: u64,
    /// Records before it, the header included.
    pub record: u64,
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

/// How to read the dates of a file: the order of `a/b/yyyy`, and the year of dates written
/// without one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dates {
    /// Day or month first.
    pub order: DateOrder,
    /// A date without a year is the latest such day on or before this one.
    pub year_anchor: Option<NaiveDate>,
}

impl From<DateOrder> for Dates {
    fn from(order: DateOrder) -> Self {
        Dates {
            order,
            year_anchor: None,
        }
    }
}

/// What a first pass over the file learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Data rows: transactions and rows to reject (blank and summary lines not counted).
    pub rows_total: u64,
    /// Summary and footer lines after the header, skipped.
    pub summary_lines: u64,
    /// How to read `a/b/yyyy` dates in this file, and why.
    pub dates: DateReading,
    /// The file's latest date, for dates written without a year.
    pub latest_date: Option<NaiveDate>,
}

impl Scan {
    /// How to read the rows: the order found, and for dates without a year the file's
    /// latest date, else `today`.
    pub fn dates(&self, today: Option<NaiveDate>) -> Dates {
        Dates {
            order: self.dates.order,
            year_anchor: self.latest_date.or(today),
        }
    }
}

/// An opened bank export: its encoding, dialect and columns.
#[derive(Clone, Debug)]
pub struct CsvFile {
    path: PathBuf,
    encoding: TextEncoding,
    delimiter: u8,
    columns: Columns,
    header_line: Option<u64>,
    data_start: ResumePoint,
}

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How often each delimiter occurs outside quotes in `text`, over its first `lines` lines.
fn delimiter_counts(text: &[u8], lines: usize) -> [usize; 4] {
    let mut counts = [0usize; 4];
    let mut quoted = false;
    let mut seen = 0;
    for &b in text {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                seen += 1;
                if seen >= lines {
                    break;
                }
            }
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|c| *c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    counts
}

/// Finds the delimiter of one line: the most frequent of `,` `;` tab `|` outside quotes
/// on the first line (`,` when none).
pub fn sniff_delimiter(first_bytes: &[u8]) -> u8 {
    let counts = delimiter_counts(first_bytes, 1);
    let mut best = 0;
    for i in 1..4 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

/// The delimiters worth trying on a file, most frequent over its first lines first.
fn delimiter_candidates(head: &str) -> Vec<u8> {
    let counts = delimiter_counts(head.as_bytes(), HEADER_SEARCH_RECORDS + 5);
    let mut order: Vec<usize> = (0..4).filter(|i| counts[*i] > 0).collect();
    order.sort_by_key(|i| std::cmp::Reverse(counts[*i]));
    let mut out: Vec<u8> = order.into_iter().map(|i| DELIMITERS[i]).collect();
    if !out.contains(&b',') {
        out.push(b',');
    }
    out
}

/// The line a record starts on. The CSV reader gives the position where it started
/// looking, before any empty lines it skipped; the line it ended on, less the line breaks
/// inside its quoted fields and its own, is where it starts (for a last line without a line
/// break this is one short, so the larger of the two is taken).
fn record_line(rec: &csv::ByteRecord, end: &csv::Position) -> u64 {
    let start = rec.position().map_or(0, |p| p.line());
    let inside = rec.iter().flatten().filter(|b| **b == b'\n').count() as u64;
    start.max(end.line().saturating_sub(inside + 1))
}

fn is_blank(rec: &csv::ByteRecord) -> bool {
    rec.iter()
        .all(|f| f.iter().all(|b| b.is_ascii_whitespace()))
}

fn position(p: &csv::Position) -> ResumePoint {
    ResumePoint {
        byte: p.byte(),
        line: p.line(),
        record: p.record(),
    }
}

impl CsvFile {
    /// Opens `path`: detects its encoding, finds its header row (below a preamble, with
    /// the delimiter that makes it one) or recognises a header-less export.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let mut raw = Vec::with_capacity(64 * 1024);
        File::open(path)?.take(64 * 1024).read_to_end(&mut raw)?;
        let (encoding, bom) = detect(&raw);
        let mut head = Vec::with_capacity(64 * 1024);
        Source::open(path, encoding)?
            .take(64 * 1024)
            .read_to_end(&mut head)?;
        let head_text = String::from_utf8_lossy(&head);
        if head_text.trim().is_empty() {
            return Err(OpenError::Empty);
        }
        let mut first_error = None;
        for delimiter in delimiter_candidates(&head_text) {
            match Self::open_with(path, encoding, bom, delimiter)? {
                Ok(file) => return Ok(file),
                Err(e) => {
                    if first_error.is_none() {
                        first_error = e;
                    }
                }
            }
        }
        Err(first_error.map_or(OpenError::Empty, OpenError::Header))
    }

    fn open_with(
        path: &Path,
        encoding: TextEncoding,
        bom: usize,
        delimiter: u8,
    ) -> Result<Result<Self, Option<HeaderError>>, OpenError> {
        let mut rdr = reader(Source::open(path, encoding)?, delimiter);
        let mut rec = csv::ByteRecord::new();
        let mut first: Vec<Vec<String>> = Vec::new();
        let mut first_error = None;
        let mut seen = 0;
        let mut start = true;
        while seen < HEADER_SEARCH_RECORDS && rdr.read_byte_record(&mut rec)? {
            let fields: Vec<String> = rec
                .iter()
                .map(|f| {
                    let f = if start {
                        f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                    } else {
                        f
                    };
                    encoding
                        .decode(f)
                        .trim_start_matches('\u{feff}')
                        .trim()
                        .to_owned()
                })
                .collect();
            start = false;
            if is_blank(&rec) {
                continue;
            }
            seen += 1;
            match find_columns(&fields) {
                Ok(columns) => {
                    let p = rdr.position();
                    return Ok(Ok(CsvFile {
                        path: path.to_owned(),
                        encoding,
                        delimiter,
                        columns,
                        header_line: Some(record_line(&rec, p)),
                        data_start: position(p),
                    }));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            if first.len() < 5 {
                first.push(fields);
            }
        }
        if let Some(columns) = headerless(&first) {
            let byte = if encoding == TextEncoding::Utf8 {
                bom as u64
            } else {
                0
            };
            return Ok(Ok(CsvFile {
                path: path.to_owned(),
                encoding,
                delimiter,
                columns,
                header_line: None,
                data_start: ResumePoint {
                    byte,
                    line: 1,
                    record: 0,
                },
            }));
        }
        Ok(Err(first_error))
    }

    /// The encoding found.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The delimiter found.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The columns found.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The line of the header row; `None` for a header-less export.
    pub fn header_line(&self) -> Option<u64> {
        self.header_line
    }

    /// Where the data rows start.
    pub fn data_start(&self) -> ResumePoint {
        self.data_start
    }

    fn records(&self, from: ResumePoint) -> Result<csv::Reader<Source>, OpenError> {
        let mut rdr = reader(Source::open(&self.path, self.encoding)?, self.delimiter);
        let mut pos = csv::Position::new();
        pos.set_byte(from.byte)
            .set_line(from.line)
            .set_record(from.record);
        rdr.seek(pos)?;
        Ok(rdr)
    }

    /// A first pass: counts the data rows and the summary lines, and decides how to read
    /// the dates (`default_order` when neither the file nor its layout says).
    /// `cancelled` is checked now and then; the pass stops early with `Ok(None)` when it
    /// says so.
    pub fn scan(
        &self,
        default_order: DateOrder,
        cancelled: impl Fn() -> bool,
    ) -> Result<Option<Scan>, OpenError> {
        self.scan_as(default_order, None, cancelled)
    }

    /// Like [`CsvFile::scan`], but with `forced` set the dates are read in that order
    /// whatever the file suggests (the user chose it: [`OrderBasis::Chosen`]).
    pub fn scan_as(
        &self,
        default_order: DateOrder,
        forced: Option<DateOrder>,
        cancelled: impl Fn() -> bool,
    ) -> Result<Option<Scan>, OpenError> {
        let mut rdr = self.records(self.data_start)?;
        let mut classifier = Classifier::default();
        let mut evidence = DateEvidence::default();
        let (mut rows_total, mut summary_lines, mut seen) = (0u64, 0u64, 0u64);
        let mut rec = csv::ByteRecord::new();
        let c = &self.columns;
        while rdr.read_byte_record(&mut rec)? {
            seen += 1;
            if seen & 4095 == 0 && cancelled() {
                return Ok(None);
            }
            if is_blank(&rec) {
                continue;
            }
            let fields = self.decode(&rec);
            let fields: Vec<&str> = fields.iter().map(|f| f.as_ref()).collect();
            match classifier.classify(&fields, c) {
                LineKind::Blank => {}
                LineKind::Summary => summary_lines += 1,
                LineKind::Data => {
                    rows_total += 1;
                    let get = |i: usize| fields.get(i).copied().unwrap_or_default();
                    evidence.observe_row(get(c.date), c.posted.map(get));
                    for &i in &c.other_dates {
                        evidence.observe(get(i));
                    }
                }
            }
        }
        let layout = c.layout;
        let dates = match forced {
            Some(order) => DateReading {
                order,
                basis: OrderBasis::Chosen,
            },
            None => evidence.decide(
                layout.date_order.unwrap_or(default_order),
                layout.date_order.is_some(),
            ),
        };
        Ok(Some(Scan {
            rows_total,
            summary_lines,
            dates,
            latest_date: evidence.latest(dates.order),
        }))
    }

    fn decode<'a>(&self, rec: &'a csv::ByteRecord) -> Vec<Cow<'a, str>> {
        rec.iter().map(|f| self.encoding.decode(f)).collect()
    }

    /// Reads data rows from `from` (the data start, or a saved [`ResumePoint`]).
    pub fn rows(&self, from: ResumePoint, dates: impl Into<Dates>) -> Result<Rows, OpenError> {
        Ok(Rows {
            rdr: self.records(from)?,
            rec: csv::ByteRecord::new(),
            file: self.clone(),
            dates: dates.into(),
            // A resume point is right after a data row, where no summary block is open
            // (see `Classifier`): reading on from it classifies as the first pass did.
            classifier: Classifier::default(),
            summary_lines: 0,
        })
    }
}

fn reader(source: Source, delimiter: u8) -> csv::Reader<Source> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(64 * 1024)
        // Records end at `\n`; a `\r` before it is whitespace that fields are trimmed of.
        // (With the default CRLF terminator a record would start at the `\n` of the line
        // before, and line numbers in CRLF files would be one short.)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(source)
}

/// Data rows of a [`CsvFile`], one at a time.
pub struct Rows {
    rdr: csv::Reader<Source>,
    rec: csv::ByteRecord,
    file: CsvFile,
    dates: Dates,
    classifier: Classifier,
    summary_lines: u64,
}

impl Rows {
    /// The next data row, `None` at the end. Blank, decoration and summary lines are
    /// skipped.
    pub fn next_row(&mut self) -> Result<Option<ParsedRow>, OpenError> {
        loop {
            if !self.rdr.read_byte_record(&mut self.rec)? {
                return Ok(None);
            }
            if is_blank(&self.rec) {
                continue;
            }
            let decoded = self.file.decode(&self.rec);
            let fields: Vec<&str> = decoded.iter().map(|f| f.as_ref()).collect();
            match self.classifier.classify(&fields, &self.file.columns) {
                LineKind::Blank => continue,
                LineKind::Summary => {
                    self.summary_lines += 1;
                    continue;
                }
                LineKind::Data => {}
            }
            let line = record_line(&self.rec, self.rdr.position());
            let outcome = parse_fields(&fields, &self.file.columns, self.dates);
            let raw = if outcome.is_err() {
                raw_text(&fields, self.file.delimiter)
            } else {
                String::new()
            };
            return Ok(Some(ParsedRow { line, outcome, raw }));
        }
    }

    /// Summary lines skipped so far by this reader.
    pub fn summary_lines(&self) -> u64 {
        self.summary_lines
    }

    /// Where the next row starts: save this to resume after the rows read so far.
    pub fn position(&self) -> ResumePoint {
        debug_assert!(!self.classifier.in_summary || self.rdr.is_done());
        position(self.rdr.position())
    }
}

fn raw_text(fields: &[&str], delimiter: u8) -> String {
    let sep = (delimiter as char).to_string();
    let joined = fields.join(&sep);
    let joined = joined.trim_end_matches(['\r', '\n']);
    let mut out: String = joined.chars().take(300).collect();
    if joined.chars().count() > 300 {
        out.push('…');
    }
    out
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
        assert_eq!(
            delimiter_candidates("Statement\nDatum;Betrag\n01.03.2024;-1.234,56\n"),
            [b';', b',']
        );
    }
}
