//! The CSV dialects of real bank exports, one small fixture file each (in `fixtures/`).

mod common;

use common::fixture;
use csv_upload::parse::{CsvFile, DateOrder, OpenError, OrderBasis, TextEncoding};

fn read(name: &str) -> (Vec<String>, u64, DateOrder) {
    let r = common::read(name, DateOrder::DayFirst, None);
    (r.rows, r.scan.rows_total, r.scan.dates.order)
}

fn rows(name: &str) -> Vec<String> {
    read(name).0
}

#[test]
fn clean_comma_separated() {
    assert_eq!(
        rows("clean_comma.csv"),
        [
            "2 2024-03-01 \"Salary ACME Corp\" 250000",
            "3 2024-03-02 \"Coffee\" -350",
            "4 2024-03-05 \"Rent\" -95000",
        ]
    );
}

#[test]
fn bom_semicolons_and_decimal_commas() {
    let file = CsvFile::open(&fixture("bom_semicolon_decimal_comma.csv")).unwrap();
    assert_eq!(file.delimiter(), b';');
    assert_eq!(
        rows("bom_semicolon_decimal_comma.csv"),
        [
            "2 2024-03-05 \"Miete März\" -123456",
            "3 2024-03-06 \"Gehalt\" 250000",
            "4 2024-03-07 \"Bäckerei\" -450",
        ]
    );
}

#[test]
fn separate_debit_and_credit_columns() {
    assert_eq!(
        rows("debit_credit.csv"),
        [
            "2 2024-03-01 \"Card payment TESCO\" -1240",
            "3 2024-03-02 \"Transfer from savings\" 100000",
            "4 2024-03-15 \"Direct debit GYM\" -3000",
        ]
    );
}

#[test]
fn quoted_fields_with_delimiters_quotes_and_newlines() {
    assert_eq!(
        rows("quoted_multiline.csv"),
        [
            "2 2024-03-01 \"Smith, Jones & Co — Invoice \\\"42\\\", paid\" -120000",
            "3 2024-03-02 \"Landlord — Rent March 2024\" -95000",
            "5 2024-03-03 \"Shop\" 500",
        ]
    );
}

#[test]
fn us_dates_are_detected_from_the_file() {
    let (rows, _, order) = read("us_dates.csv");
    assert_eq!(order, DateOrder::MonthFirst);
    assert_eq!(
        rows,
        [
            "2 2024-03-05 \"Gas station\" -4000",
            "3 2024-03-25 \"Paycheck\" 200000",
            "4 2024-12-31 \"Year end\" 100",
        ]
    );
}

#[test]
fn columns_in_any_order_with_aliases() {
    assert_eq!(
        rows("columns_any_order.csv"),
        [
            "2 2024-03-08 \"Cafe Blau — Lunch\" -1200",
            "3 2024-03-10 \"Alice\" 10000",
        ]
    );
}

#[test]
fn trailing_blank_lines_and_crlf() {
    let (rows, total, _) = read("trailing_blank_lines_crlf.csv");
    assert_eq!(total, 2);
    assert_eq!(
        rows,
        ["2 2024-03-01 \"One\" 100", "3 2024-03-02 \"Two\" 200"]
    );
}

#[test]
fn text_month_dates_and_tabs() {
    assert_eq!(
        rows("text_dates_tab.csv"),
        [
            "2 2024-03-05 \"ATM withdrawal\" -10000",
            "3 2024-03-06 \"Refund\" 1999",
            "4 2024-03-07 \"Fee\" -100",
        ]
    );
}

#[test]
fn latin1_text_is_read() {
    assert_eq!(rows("latin1.csv"), ["2 2024-03-01 \"Café Müller\" -320"]);
}

#[test]
fn bad_rows_are_rejected_with_their_line_and_reason() {
    assert_eq!(
        rows("bad_rows.csv"),
        [
            "2 2024-03-01 \"Good one\" 1000",
            "3 rejected: date `not a date` is not a date in a known format",
            "4 rejected: amount `twelve` is not a number",
            "5 rejected: row has 2 fields, the header has 3",
            "6 rejected: amount `1.2345` has more than two decimals",
            "7 rejected: date `2024-02-30` is not a date in a known format",
            "8 2024-03-07 \"Good two\" -725",
        ]
    );
}

#[test]
fn a_file_without_a_header_is_refused_permanently() {
    let e = CsvFile::open(&fixture("no_header.csv")).unwrap_err();
    assert!(e.is_permanent());
    assert!(
        e.to_string()
            .starts_with("no usable header row: no date column"),
        "{e}"
    );
    let e = CsvFile::open(&fixture("empty.csv")).unwrap_err();
    assert!(matches!(e, OpenError::Empty) && e.is_permanent(), "{e}");
}

#[test]
fn resuming_from_a_saved_position_reads_the_rest() {
    let file = CsvFile::open(&fixture("quoted_multiline.csv")).unwrap();
    let mut rows = file.rows(file.data_start(), DateOrder::DayFirst).unwrap();
    rows.next_row().unwrap().unwrap();
    let saved = rows.position();
    let mut resumed = file.rows(saved, DateOrder::DayFirst).unwrap();
    let next = resumed.next_row().unwrap().unwrap();
    assert_eq!(next.line, 3, "the multi-line record after the first");
    assert_eq!(resumed.next_row().unwrap().unwrap().line, 5);
    assert!(resumed.next_row().unwrap().is_none());
}

#[test]
fn utf16_with_and_without_a_byte_order_mark() {
    let expected = [
        "2 2024-03-05 \"Café Zürich\" -450",
        "3 2024-03-06 \"Salary\" 250000",
    ];
    for name in ["utf16le_bom.csv", "utf16be_nobom.csv"] {
        let file = CsvFile::open(&fixture(name)).unwrap();
        assert_eq!(file.delimiter(), b'\t', "{name}");
        assert_eq!(rows(name), expected, "{name}");
    }
    assert_eq!(
        CsvFile::open(&fixture("utf16le_bom.csv"))
            .unwrap()
            .encoding(),
        TextEncoding::Utf16Le
    );
    assert_eq!(
        CsvFile::open(&fixture("utf16be_nobom.csv"))
            .unwrap()
            .encoding(),
        TextEncoding::Utf16Be
    );
}

#[test]
fn a_preamble_without_delimiters_and_a_total_below() {
    let file = CsvFile::open(&fixture("preamble_semicolon.csv")).unwrap();
    assert_eq!((file.delimiter(), file.header_line()), (b';', Some(4)));
    let scan = file.scan(DateOrder::DayFirst, || false).unwrap().unwrap();
    assert_eq!((scan.rows_total, scan.summary_lines), (2, 1));
    assert_eq!(
        rows("preamble_semicolon.csv"),
        [
            "5 2024-03-05 \"Vermieter — Miete März\" -123456",
            "6 2024-03-06 \"ACME — Gehalt\" 250000",
        ]
    );
}

#[test]
fn dates_without_a_year_are_before_the_upload() {
    let file = CsvFile::open(&fixture("no_year.csv")).unwrap();
    let scan = file.scan(DateOrder::DayFirst, || false).unwrap().unwrap();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 10);
    let mut rows = file.rows(file.data_start(), scan.dates(today)).unwrap();
    let mut got = Vec::new();
    while let Some(r) = rows.next_row().unwrap() {
        got.push(r.outcome.map(|t| t.date.to_string()));
    }
    assert_eq!(got, [Ok("2025-12-28".into()), Ok("2026-01-02".into())]);
}

#[test]
fn dates_both_ways_above_12_reject_the_minority_never_misread_them() {
    let (rows, _, order) = read("conflicting_dates.csv");
    assert_eq!(order, DateOrder::MonthFirst, "two against one");
    assert_eq!(
        rows,
        [
            "2 rejected: date `25/03/2024` is not a date when read as month/day (as the rest of the file is)",
            "3 2024-03-26 \"Month first\" -200",
            "4 2024-03-27 \"Month first too\" -300",
        ]
    );
}

#[test]
fn undecidable_dates_follow_the_configured_order_and_say_so() {
    for default in [DateOrder::DayFirst, DateOrder::MonthFirst] {
        let file = CsvFile::open(&fixture("undecidable_dates.csv")).unwrap();
        let scan = file.scan(default, || false).unwrap().unwrap();
        assert_eq!(
            (scan.dates.order, scan.dates.basis),
            (default, OrderBasis::Default)
        );
        assert_eq!(
            scan.dates.note(),
            Some(format!("dates read as {}", default.words()))
        );
    }
}

#[test]
fn resuming_past_a_summary_line_reads_the_same_rows() {
    let file = CsvFile::open(&fixture("banks/axis.csv")).unwrap();
    let all = |from| {
        let mut rows = file.rows(from, DateOrder::DayFirst).unwrap();
        let mut out = Vec::new();
        let mut positions = Vec::new();
        while let Some(r) = rows.next_row().unwrap() {
            out.push((r.line, r.outcome.is_ok()));
            positions.push(rows.position());
        }
        (out, positions)
    };
    let (whole, positions) = all(file.data_start());
    assert_eq!(whole, [(9, true), (10, true), (11, true)]);
    for (i, p) in positions.into_iter().enumerate() {
        assert_eq!(all(p).0, whole[i + 1..], "resumed after row {i}");
    }
}

#[test]
fn line_numbers_count_the_empty_lines_before_a_record() {
    assert_eq!(
        rows("blank_lines_lf.csv"),
        [
            "3 2024-03-01 \"After a blank line\" 100",
            "4 2024-03-02 \"Two lines\" 200",
            "7 2024-03-03 \"Last\" 300",
        ]
    );
}
