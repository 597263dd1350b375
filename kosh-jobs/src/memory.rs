//! The in-memory backend (in progress).
