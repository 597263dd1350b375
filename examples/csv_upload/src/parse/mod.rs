//! Reading bank exports as banks write them: the encoding, a preamble above the header,
//! columns by name (per bank layout), summary and footer lines, dates in the order the file
//! means and amounts in every local style. Pure code, no database: unit tests here and in
//! `tests/dialects.rs` and `tests/banks.rs` (fixtures in `tests/fixtures/`).

mod amount;
mod date;
mod encoding;
mod header;
mod layout;
mod order;
mod reader;
mod row;
mod summary;

pub use amount::{parse_amount, AmountError};
pub use date::{parse_date, parse_date_near, DateError};
pub use encoding::{looks_like_utf16, TextEncoding};
pub use header::{find_columns, normalize, AmountColumns, Columns, HeaderError};
pub use layout::{all_layouts, known_layouts, Layout, Sign};
pub use order::{DateEvidence, DateOrder, DateReading, OrderBasis};
pub use reader::{
    sniff_delimiter, CsvFile, Dates, OpenError, ParsedRow, ResumePoint, Rows, Scan,
    HEADER_SEARCH_RECORDS,
};
pub use row::{parse_fields, Transaction};
pub use summary::{Classifier, LineKind};
