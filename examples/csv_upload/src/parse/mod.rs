//! Reading bank exports: columns by name, dialects, dates and amounts. Pure code, no
//! database: unit tests here and in `tests/dialects.rs` (fixtures in `tests/fixtures/`).

mod amount;
mod date;
mod header;
mod reader;

pub use amount::{parse_amount, AmountError};
pub use date::{parse_date, DateError, DateEvidence, DateOrder};
pub use header::{find_columns, AmountColumns, Columns, HeaderError};
pub use reader::{
    parse_record, sniff_delimiter, CsvFile, OpenError, ParsedRow, ResumePoint, Rows, Scan,
    Transaction,
};
