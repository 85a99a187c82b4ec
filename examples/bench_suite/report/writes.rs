//! The write path's rows (measure 17, group commit on PostgreSQL) and the
//! failover's (measure 18): appends at 32 writers against 1, refresh per
//! core, refresh and login p99 at 8 callers against the same measure at
//! the commit before group commit (bench/writes_baseline.json), and the
//! seconds from a standby's promotion until the fleet writes again.
//! Imports the report's helpers; reads the results folder and the baseline.

use super::*;

/// What the write rows read, kept for results.json.
pub(super) struct Writes {
    pub(super) writes: Value,
    pub(super) baseline: Value,
    pub(super) failover: Value,
}

fn p99(v: &Value) -> Option<f64> {
    num(&v["latency"]["p99_us"])
}

/// Adds the write path's rows to `rows`.
pub(super) fn rows(rows: &mut Vec<Row>, results: &Path, out: &Path) -> Writes {
    let writes = read_json(&results.join("writes.json"));
    let baseline = read_json(&out.join("writes_baseline.json"));
    let failover = read_json(&results.join("failover.json"));
    let rate = |w: u64| {
        writes["append"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["writers"] == w))
            .and_then(|x| num(&x["appends_per_s"]))
    };
    let ratio = num(&writes["append_ratio_32_to_1"]);
    rows.push(row(
        "17. appends, 32 writers vs 1 (PostgreSQL)",
        match (rate(32), rate(1), ratio) {
            (Some(a), Some(b), Some(r)) => format!("{a:.0}/s vs {b:.0}/s: {r:.2}×"),
            _ => "not measured".into(),
        },
        "≥ 5×",
        ratio.map(|r| r >= 5.0),
        format!(
            "one event per store call, concurrent calls grouped into one transaction and one commit \
             (group commit); 8 writers {} /s; before group commit ({}): {}",
            rate(8).map_or("?".into(), |r| format!("{r:.0}")),
            baseline["commit"].as_str().unwrap_or("?"),
            baseline["append"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|x| format!("{} writers {}/s", x["writers"], x["appends_per_s"]))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_else(|| "not measured".into())
        ),
    ));
    let per_core = num(&writes["refresh_per_core_pg"]);
    rows.push(row(
        "17. refresh on PostgreSQL per core",
        per_core.map_or("not measured".into(), |p| {
            format!(
                "{p:.0}/s per core ({}/s on {} cores)",
                writes["refresh"]["refreshes_per_s"], writes["cores"]
            )
        }),
        "≥ 1,400/s per core",
        per_core.map(|p| p >= 1400.0),
        format!(
            "Recall's own refresh path (CAS, theft check, cutoffs, event), 64 sessions at once, \
             PostgreSQL on the same cores; before group commit: {}/s per core",
            baseline["refresh"]["per_core"]
        ),
    ));
    for (key, label) in [("refresh_8", "refresh"), ("login_8", "login")] {
        let (now, before) = (p99(&writes[key]), p99(&baseline[key]));
        rows.push(row(
            &format!("17. {label} p99 at 8 callers vs before group commit"),
            match (now, before) {
                (Some(n), Some(b)) => format!("{:.2} ms vs {:.2} ms", n / 1000.0, b / 1000.0),
                _ => "not measured".into(),
            },
            "≤ 2× before",
            now.zip(before).map(|(n, b)| n <= 2.0 * b),
            format!(
                "p50 {} µs (before {} µs); batching must not buy throughput with latency",
                writes[key]["latency"]["p50_us"], baseline[key]["latency"]["p50_us"]
            ),
        ));
    }
    let secs = num(&failover["failover_secs"]);
    rows.push(row(
        "18. PostgreSQL failover: promotion until every instance writes",
        secs.map_or("not measured".into(), |s| format!("{s:.2} s")),
        "a few seconds (≤ 5 s)",
        secs.map(|s| s <= 5.0),
        "scripts/failover.sh: a synchronous standby promoted after the primary is stopped in \
         immediate mode under load on a 3-instance fleet; every 2xx in the new primary's log, \
         seqs 1..N, no revoked token accepted (release build)"
            .into(),
    ));
    Writes {
        writes,
        baseline,
        failover,
    }
}
