//! The sqlite backend of kosh-jobs (in progress).
