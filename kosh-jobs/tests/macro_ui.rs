//! Compile-time behaviour of `#[job]`: every accepted handler shape compiles (and runs), and
//! every mistake is one error at the offending token, as recorded in `ui/fail/*.stderr`.
//!
//! After changing a message, regenerate with `TRYBUILD=overwrite cargo test -p kosh-jobs
//! --test macro_ui` and review each changed `.stderr`.

#[test]
fn job_attribute() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
