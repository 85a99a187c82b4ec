//! The propagation rows: revocations to an SSF push receiver (measure
//! 12), to verifiers following the feed (measure 11), across the fleet
//! (measure 3), and the previous run's figures beside this one's. Imports
//! the report's helpers; reads only the results folder and the previous
//! results.json.

use super::*;

/// What the propagation rows read, kept for results.json.
pub(super) struct Propagation {
    pub(super) signals: Value,
    pub(super) followers: Value,
    pub(super) fleet: Value,
}

/// "p50 / p99 / max ms" of a latency measure, if it has all three.
fn p50_p99_max(v: &Value) -> Option<String> {
    match (num(&v["p50_ms"]), num(&v["p99_ms"]), num(&v["max_ms"])) {
        (Some(p50), Some(p99), Some(max)) => Some(format!("{p50:.2} / {p99:.2} / {max:.2} ms")),
        _ => None,
    }
}

/// Adds the propagation rows to `rows`; `out` holds the previous run's results.
pub(super) fn rows(rows: &mut Vec<Row>, results: &Path, out: &Path) -> Propagation {
    let fleet = read_json(&results.join("fleet.json"));
    let signals = read_json(&results.join("ssf.json"));
    rows.push(row(
        "12. revoking call to SET at a push receiver (p50 / p99 / max)",
        p50_p99_max(&signals).unwrap_or_else(|| "not measured".into()),
        "reported",
        None,
        format!(
            "{} admin revocations one at a time on one instance (PostgreSQL); an SSF push stream (RFC 8935) to a receiver on loopback; {} not within 5 s",
            signals["revocations"], signals["not_within_5s"]
        ),
    ));
    let followers = read_json(&results.join("verifiers.json"));
    let vp99 = num(&followers["p99_ms"]);
    rows.push(row(
        "11. propagation to verifiers (p50 / p99 / max)",
        p50_p99_max(&followers).unwrap_or_else(|| "not measured".into()),
        "p99 ≤ 10 ms",
        vp99.map(|p| p <= 10.0),
        format!(
            "{} revocations one at a time through C of a 3-instance fleet (PostgreSQL + Redis); two recall-verifier instances following A's and B's SSE feeds; from C's answer until both reject; {} not within 2 s",
            followers["revocations"], followers["not_within_2s"]
        ),
    ));
    let p99 = num(&fleet["p99_ms"]);
    rows.push(row(
        "3. propagation A → B and C (p50 / p99 / max)",
        p50_p99_max(&fleet).unwrap_or_else(|| "not measured".into()),
        "p99 ≤ 10 ms",
        p99.map(|p| p <= 10.0),
        format!(
            "{} revocations one at a time through A; 3 in-process instances on PostgreSQL + Redis pub/sub; \
             notices {}; from A's answer until both B and C reject (busy-polled state); {} not within 2 s",
            fleet["revocations"],
            fleet["notices"].as_str().unwrap_or("?"),
            fleet["not_within_2s"]
        ),
    ));
    // Before and after: the propagation of the run this one replaces.
    let previous = read_json(&out.join("results.json"));
    let before = &previous["propagation"];
    rows.push(row(
        "3. propagation, the previous run (before)",
        p50_p99_max(before).unwrap_or_else(|| "no previous run".into()),
        "p99 ≤ 10 ms",
        num(&before["p99_ms"]).map(|p| p <= 10.0),
        format!(
            "bench/results.json as it stood: commit {}, {}; notices then {}",
            previous["commit"].as_str().unwrap_or("?"),
            previous["date"].as_str().unwrap_or("?"),
            before["notices"]
                .as_str()
                .unwrap_or("plain JSON (unauthenticated)")
        ),
    ));
    Propagation {
        signals,
        followers,
        fleet,
    }
}
