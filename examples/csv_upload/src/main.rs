fn main() {
    println!("csv_upload: not built yet");
}
