//! The `csv_upload` binary (being built).

fn main() {
    println!("csv_upload: not built yet");
}
