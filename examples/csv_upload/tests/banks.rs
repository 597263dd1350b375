//! Statements shaped like the exports of real banks (hand-made, in `fixtures/banks/`): each
//! to its bank's column layout and quirks (preamble, summary footer, date style, sign
//! convention, encoding), with its transactions checked row by row.

mod common;

use chrono::NaiveDate;
use common::Read;
use csv_upload::parse::{DateOrder, OrderBasis, TextEncoding};

/// Fixture `banks/NAME` read as the import job reads it, both passes skipping the same
/// summary lines.
fn read_with(name: &str, default: DateOrder, today: Option<NaiveDate>) -> Read {
    let r = common::read(&format!("banks/{name}"), default, today);
    assert_eq!(
        r.summary_lines, r.scan.summary_lines,
        "{name}: both passes skip the same lines"
    );
    r
}

fn read(name: &str) -> Read {
    read_with(name, DateOrder::DayFirst, None)
}

/// Checks the layout, the summary lines skipped, how dates were read, and every row.
fn check(r: &Read, layout: &str, summary: u64, dates: (DateOrder, OrderBasis), rows: &[&str]) {
    assert_eq!(r.file.columns().layout.name, layout);
    assert_eq!(r.rows, rows);
    assert_eq!(r.scan.summary_lines, summary, "summary lines skipped");
    if dates.1 == NotNeeded {
        // No `a/b/yyyy` date: the order means nothing, and nothing is guessed.
        assert_eq!(r.scan.dates.basis, NotNeeded);
        assert!(!r.scan.dates.guessed());
    } else {
        assert_eq!((r.scan.dates.order, r.scan.dates.basis), dates);
    }
}

use DateOrder::{DayFirst as DMY, MonthFirst as MDY};
use OrderBasis::{NotNeeded, Span, Unambiguous};

// India.

#[test]
fn hdfc_with_its_preamble_separators_and_statement_summary() {
    let r = read("hdfc.csv");
    assert_eq!(r.file.header_line(), Some(11), "below the account details");
    check(
        &r,
        "HDFC Bank",
        7,
        (DMY, Unambiguous),
        &[
            "13 2026-04-01 \"UPI-SWIGGY-SWIGGY@ICICI-ICIC0DC0099-409112345678-PAYMENT\" -45000",
            "14 2026-04-03 \"NEFT CR-ACME TECHNOLOGIES PVT LTD-APRIL SALARY\" 15000000",
            "15 2026-04-05 \"ATW-416021XXXXXX1234-S1ANMU12-MUMBAI\" -1000000",
            "16 2026-04-15 \"EMI 123456789 CHQ S1234567 0426\" -1234550",
        ],
    );
}

#[test]
fn sbi_tab_separated_with_text_month_dates() {
    let r = read("sbi.csv");
    assert_eq!(r.file.delimiter(), b'\t');
    check(
        &r,
        "State Bank of India",
        1,
        (DMY, NotNeeded),
        &[
            "17 2026-04-01 \"BY TRANSFER-NEFT*HDFC0000001*N091261234*ACME CORP--\" 12000000",
            "18 2026-04-02 \"TO TRANSFER-UPI/DR/609212345678/BIGBASKET/YESB/Payment--\" -234050",
            "19 2026-04-10 \"ATM WDL-ATM CASH 1234 SBI MG ROAD BENGALURU--\" -500000",
            "20 2026-04-14 \"DEBIT-ACHDr NACH00000000012345 LIC OF INDIA--\" -321000",
        ],
    );
}

#[test]
fn icici_with_a_leading_empty_column_and_legends_below() {
    let r = read("icici.csv");
    // Every date reads both ways; day first they span a week, month first seven months.
    check(
        &r,
        "ICICI Bank",
        3,
        (DMY, Span),
        &[
            "7 2026-04-01 \"UPI/609112345678/Payment from Ph/ZOMATO/Axis Bank\" -34900",
            "8 2026-04-02 \"NEFT-BARBN52026040212345-INFOSYS LIMITED-SALARY\" 8500000",
            "9 2026-04-04 \"CLG/RAMESH KUMAR/RENT APRIL\" -1800000",
            "10 2026-04-08 \"ATM/CASH WDL/09-04-2026/MUMBAI\" -200000",
        ],
    );
    assert_eq!(
        r.scan.dates.note().as_deref(),
        Some("dates read as day/month")
    );
}

#[test]
fn axis_with_opening_total_and_closing_lines_and_legal_text() {
    check(
        &read("axis.csv"),
        "Axis Bank",
        4,
        (DMY, Unambiguous),
        &[
            "9 2026-04-01 \"UPI/P2M/609112345678/AMAZON PAY/Payment\" -129900",
            "10 2026-04-13 \"NEFT/AXISP00123456/SALARY/TATA CONSULTANCY\" 9500000",
            "11 2026-04-20 \"CHQ PAID-MICR INWARD CLEARING-SHARMA\" -2500000",
        ],
    );
}

#[test]
fn kotak_with_an_amount_and_a_dr_cr_column() {
    check(
        &read("kotak.csv"),
        "Kotak Mahindra Bank",
        2,
        (DMY, Unambiguous),
        &[
            "9 2026-04-02 \"UPI/FLIPKART/609212345678/Payment\" -123450",
            "10 2026-04-05 \"NEFT CR-KKBK0000123-INFOSYS SALARY\" 7500000",
            "11 2026-04-16 \"IMPS-609912345678-RENT\" -2200000",
        ],
    );
}

// United States.

#[test]
fn chase_card_where_only_the_span_tells_month_first() {
    // The case of the issue: `11/02/2026` is November 2. Both readings descend and every
    // posting date is after its transaction date either way; month first the rows span 3
    // days, day first 3 months.
    let r = read("chase_card.csv");
    check(
        &r,
        "Chase (card)",
        0,
        (MDY, Span),
        &[
            "2 2026-11-05 \"STARBUCKS STORE 12345\" -645",
            "3 2026-11-04 \"AMAZON MKTPL*AB12C3DE4\" -4299",
            "4 2026-11-03 \"Payment Thank You-Mobile\" 50000",
            "5 2026-11-02 \"SHELL OIL 57444363\" -3820",
            "6 2026-11-02 \"AMAZON MKTPL*RETURN · gift\" 1500",
        ],
    );
    assert!(r.scan.dates.guessed());
    assert_eq!(
        r.scan.dates.note().as_deref(),
        Some("dates read as month/day")
    );
    // The configured default does not override what the file shows.
    let r = read_with("chase_card.csv", DMY, None);
    assert_eq!(r.scan.dates.order, MDY);
}

#[test]
fn chase_checking_keeps_the_description_not_the_type() {
    check(
        &read("chase_checking.csv"),
        "Chase (checking)",
        0,
        (MDY, Unambiguous),
        &[
            "2 2026-04-28 \"ZELLE PAYMENT TO JOHN DOE 12345678\" -12000",
            "3 2026-04-15 \"ACME INC PAYROLL PPD ID: 1234567890\" 250000",
            "4 2026-04-10 \"CHECK 1042\" -35000",
            "5 2026-04-02 \"REMOTE ONLINE DEPOSIT # 1\" 35055",
        ],
    );
}

#[test]
fn bank_of_america_with_a_summary_block_above_and_a_balance_row() {
    let r = read("bofa.csv");
    assert_eq!(r.file.header_line(), Some(7));
    check(
        &r,
        "Bank of America",
        1,
        (MDY, Unambiguous),
        &[
            "9 2026-03-02 \"BKOFAMERICA ATM 03/02 #000001234 WITHDRWL MAIN ST\" -20000",
            "10 2026-03-05 \"ACME CORP DES:PAYROLL ID:1234 INDN:DOE,JANE CO ID:1234567890 PPD\" 310000",
            "11 2026-03-17 \"NETFLIX.COM DES:NETFLIX ID:1234 INDN:JANE DOE\" -1549",
            "12 2026-03-28 \"CITY WATER UTIL DES:BILL PAY\" -199498",
        ],
    );
}

#[test]
fn american_express_charges_are_positive_in_the_file() {
    check(
        &read("amex.csv"),
        "American Express",
        0,
        (MDY, Span),
        &[
            "2 2026-04-03 \"UBER TRIP HELP.UBER.COM\" -2345",
            "3 2026-04-02 \"AUTOPAY PAYMENT - THANK YOU\" 125000",
            "4 2026-04-02 \"WHOLEFDS MKT 10234\" -8712",
            "5 2026-04-01 \"AMAZON.COM RETURN\" 1999",
        ],
    );
    check(
        &read("amex_extended.csv"),
        "American Express",
        0,
        (MDY, Unambiguous),
        &[
            "2 2026-04-28 \"DELTA AIR LINES ATLANTA\" -41260",
            "5 2026-04-15 \"ONLINE PAYMENT - THANK YOU\" 150000",
        ],
    );
}

#[test]
fn wells_fargo_without_a_header() {
    let r = read("wells_fargo.csv");
    assert_eq!(r.file.header_line(), None);
    check(
        &r,
        "Wells Fargo",
        0,
        (MDY, Unambiguous),
        &[
            "1 2026-04-30 \"PURCHASE AUTHORIZED ON 04/28 SAFEWAY #1234 SAN JOSE CA S586118123456789 CARD 1234\" -5217",
            "2 2026-04-30 \"ACME CORP PAYROLL 260430 XXXXX1234 DOE,JANE\" 215000",
            "3 2026-04-29 \"ONLINE TRANSFER REF #IBE123 TO RENT\" -180000",
            "4 2026-04-03 \"RECURRING PAYMENT AUTHORIZED ON 04/02 SPOTIFY USA\" -999",
        ],
    );
}

#[test]
fn capital_one_with_debit_and_credit_columns() {
    check(
        &read("capital_one.csv"),
        "Capital One",
        0,
        (DMY, NotNeeded),
        &[
            "2 2026-04-29 \"TRADER JOE S #123\" -3456",
            "3 2026-04-27 \"CAPITAL ONE MOBILE PYMT\" 25000",
            "4 2026-04-25 \"SHELL OIL 12345678\" -4120",
        ],
    );
}

// United Kingdom.

#[test]
fn barclays_reads_the_memo() {
    let r = read("barclays.csv");
    check(
        &r,
        "Barclays",
        0,
        (DMY, Span),
        &[
            "2 2026-04-02 \"SAINSBURYS SACAT 1234 ON 01 APR BCC\" -1250",
            "3 2026-04-03 \"ACME LTD SALARY APR BGC\" 185000",
            "4 2026-04-07 \"LANDLORD LTD RENT STO\" -65000",
            "5 2026-04-10 \"TFL TRAVEL CH TFL.GOV.UK/CP BCC\" -420",
        ],
    );
    // Read month first these dates would span eight months: the span decides, not the
    // configured default.
    assert_eq!(read_with("barclays.csv", MDY, None).scan.dates.order, DMY);
}

#[test]
fn hsbc_without_a_header() {
    check(
        &read("hsbc.csv"),
        "HSBC",
        0,
        (DMY, Unambiguous),
        &[
            "1 2026-04-03 \"TESCO STORES 2345\" -2345",
            "2 2026-04-05 \"ACME LTD SALARY\" 210000",
            "3 2026-04-19 \"THAMES WATER\" -103410",
        ],
    );
}

#[test]
fn monzo_keeps_the_name_with_the_description_and_notes() {
    check(
        &read("monzo.csv"),
        "Monzo",
        0,
        (DMY, Unambiguous),
        &[
            "2 2026-04-01 \"Pret A Manger — PRET A MANGER LONDON GBR\" -435",
            "3 2026-04-01 \"Jane Doe — Rent share #flat\" 25000",
            "4 2026-04-14 \"Ristorante Roma — RISTORANTE ROMA ROMA ITA · Dinner #holiday\" -3600",
        ],
    );
}

#[test]
fn starling_skips_its_opening_balance_row() {
    check(
        &read("starling.csv"),
        "Starling",
        1,
        (DMY, Unambiguous),
        &[
            "3 2026-04-02 \"Tesco — TESCO STORES 6543\" -1840",
            "4 2026-04-05 \"Acme Ltd — APRIL SALARY\" 240000",
            "5 2026-04-29 \"Octopus Energy — A-1B2C3D4E\" -9612",
        ],
    );
}

// Europe.

#[test]
fn dkb_counterparty_by_direction() {
    let r = read("dkb.csv");
    assert_eq!(
        (r.file.delimiter(), r.file.encoding()),
        (b';', TextEncoding::Utf8)
    );
    check(
        &r,
        "DKB",
        0,
        (DMY, NotNeeded),
        &[
            "6 2026-04-29 \"REWE Markt GmbH — REWE SAGT DANKE 12345\" -4567",
            "7 2026-04-28 \"ACME GmbH — Lohn/Gehalt 04/2026\" 321000",
            "8 2026-04-15 \"Stadtwerke München — Abschlag Strom April\" -123456",
        ],
    );
}

#[test]
fn sparkasse_in_windows_1252_keeps_the_payee() {
    let r = read("sparkasse.csv");
    assert_eq!(r.file.encoding(), TextEncoding::Windows1252);
    check(
        &r,
        "German banks (Sparkasse, Deutsche Bank, ING, comdirect, Volksbank)",
        0,
        (DMY, NotNeeded),
        &[
            "2 2026-04-30 \"Hausverwaltung Müller & Söhne — Miete Mai Whg. 3 rechts\" -85000",
            "3 2026-04-25 \"Hausverwaltung Müller & Söhne — Erstattung Nebenkosten 2025\" 12345",
            "4 2026-04-02 \"Bäckerei Schäfer — Bäckerei Schäfer//Düsseldorf/DE\" -480",
        ],
    );
}

#[test]
fn deutsche_bank_with_soll_haben_and_a_closing_balance() {
    let r = read("deutsche_bank.csv");
    assert_eq!(r.file.header_line(), Some(5));
    check(
        &r,
        "German banks (Sparkasse, Deutsche Bank, ING, comdirect, Volksbank)",
        1,
        (DMY, NotNeeded),
        &[
            "6 2026-04-28 \"Telekom Deutschland GmbH — Festnetz Rechnung 04/2026\" -3995",
            "7 2026-04-15 \"Max Mustermann — Geschenk\" -125000",
            "8 2026-04-01 \"ACME GmbH — Gehalt April\" 350000",
        ],
    );
}

#[test]
fn french_debit_credit_with_spaced_thousands() {
    let r = read("bnp.csv");
    assert_eq!(r.file.encoding(), TextEncoding::Windows1252);
    check(
        &r,
        "French banks (BNP Paribas, Société Générale, Crédit Agricole, LCL)",
        1,
        (DMY, Unambiguous),
        &[
            "4 2026-04-02 \"CB CARREFOUR 01/04 PARIS\" -5430",
            "5 2026-04-05 \"VIR SEPA RECU /DE ACME SAS /MOTIF SALAIRE AVRIL\" 285000",
            "6 2026-04-18 \"PRLV SEPA EDF CLIENTS PARTICULIERS\" -123456",
            "7 2026-04-30 \"FRAIS TENUE DE COMPTE\" -200",
        ],
    );
}

#[test]
fn ing_netherlands_af_bij_and_yyyymmdd() {
    check(
        &read("ing_nl.csv"),
        "ING (Netherlands)",
        0,
        (DMY, NotNeeded),
        &[
            "2 2026-04-03 \"Albert Heijn 1234 AMSTERDAM NLD — Pasvolgnr: 001 03-04-2026 18:22 Transactie: 12AB34 Term: 5678\" -2345",
            "3 2026-04-01 \"ACME B.V. — Naam: ACME B.V. Omschrijving: Salaris april IBAN: NL91ABNA0417164300\" 315000",
            "4 2026-04-01 \"Vattenfall Klantenservice N.V. — Naam: Vattenfall Omschrijving: Termijnbedrag april\" -11200",
        ],
    );
}
