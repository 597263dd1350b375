//! The backend conformance suite (in progress).
