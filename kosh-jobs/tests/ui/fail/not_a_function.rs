#[kosh_jobs::job(queue = "pings")]
struct Ping;

fn main() {}
