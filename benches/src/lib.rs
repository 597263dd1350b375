//! Benchmarks of kosh-jobs (in progress).
