//! Benchmarks of kosh-jobs: see `src/bin/throughput.rs` and `benches/`.
