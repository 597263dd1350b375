//! Peak resident memory of this process, from `/proc/self/status` (Linux only).

/// The peak resident set size (`VmHWM`) in KiB, or `None` where `/proc` has no such line.
pub fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, "VmHWM:")
}

/// Resets the peak to the current resident size, so the next [`peak_kib`] is the peak of what
/// ran since (writes `5` to `/proc/self/clear_refs`). Returns whether that worked.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The value of a `Name:   123 kB` line.
pub fn parse_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// KiB as MiB with one decimal, e.g. `"12.5 MiB"`; `"n/a"` for `None`.
pub fn format_kib(kib: Option<u64>) -> String {
    match kib {
        Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
        None => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_status_line() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(1234));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
        assert_eq!(format_kib(Some(1536)), "1.5 MiB");
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(peak_kib().unwrap_or(0) > 0);
        }
    }
}
