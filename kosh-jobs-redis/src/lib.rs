//! The redis backend of kosh-jobs (in progress).
