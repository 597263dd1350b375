//! Items the `#[job]` attribute's expansion names. Not a public API: may change in any release.
