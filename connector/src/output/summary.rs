//! The human summary printed on stderr at the end of a run.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::extract::RunOutcome;

/// Formats a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The summary text.
pub fn render(
    outcome: &RunOutcome,
    requests: &BTreeMap<&'static str, u64>,
    bytes_fetched: u64,
    elapsed: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "extracted {} bucket(s): {} dataset(s) from {} object(s) ({}) in {:.1}s",
        outcome.buckets,
        outcome.datasets,
        outcome.objects,
        human_bytes(outcome.bytes),
        elapsed.as_secs_f64()
    );
    let total_requests: u64 = requests.values().sum();
    let by_kind: Vec<String> = requests.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        s,
        "requests: {total_requests} ({}); fetched {}",
        by_kind.join(", "),
        human_bytes(bytes_fetched)
    );
    if outcome.problems.is_empty() {
        let _ = writeln!(s, "problems: none");
    } else {
        let total: u64 = outcome.problems.values().sum();
        let by_code: Vec<String> = outcome.problems.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(s, "problems: {total} ({})", by_code.join(", "));
    }
    if !outcome.unlisted_buckets.is_empty() {
        let _ = writeln!(s, "could not list: {}", outcome.unlisted_buckets.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn summary_names_problems_and_unlisted_buckets() {
        let mut outcome =
            RunOutcome { buckets: 2, datasets: 3, objects: 10, bytes: 2048, ..Default::default() };
        outcome.problems.insert("SSE_C_KEY_REQUIRED", 1);
        outcome.unlisted_buckets.push("missing-bucket".into());
        let mut requests = BTreeMap::new();
        requests.insert("GetObject", 4);
        let text = render(&outcome, &requests, 100, Duration::from_millis(1500));
        assert!(text.contains("3 dataset(s) from 10 object(s)"));
        assert!(text.contains("SSE_C_KEY_REQUIRED 1"));
        assert!(text.contains("could not list: missing-bucket"));
        assert!(text.contains("GetObject 4"));
    }
}
