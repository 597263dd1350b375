//! worker
pub struct Worker;
pub struct WorkerBuilder;
