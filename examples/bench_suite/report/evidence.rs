//! The log-as-evidence rows (measure 19): verifying the hash chain of a
//! million events, and pruning them, on each store.
//! Imports the report's helpers; reads the results folder.

use super::*;

/// Adds the evidence rows to `rows`; what they read, for results.json.
pub(super) fn rows(rows: &mut Vec<Row>, results: &Path) -> Value {
    let evidence = read_json(&results.join("evidence.json"));
    for store in ["postgres", "sqlite"] {
        let m = &evidence[store];
        let verify = num(&m["verify_s"]);
        rows.push(row(
            &format!("19. verify-log, 1,000,000 events ({store})"),
            verify.map_or("not measured".into(), |s| {
                format!("{s:.2} s ({}/s)", m["verify_per_s"])
            }),
            "seconds, not minutes (≤ 30 s)",
            verify.map(|s| s <= 30.0),
            "Store::verify_log from the first event: one snapshot, pages of 10,000, each row's \
             SHA-256 recomputed and linked"
                .into(),
        ));
        let prune = num(&m["prune_s"]);
        rows.push(row(
            &format!("19. retention: prune 1,000,000 events ({store})"),
            prune.map_or("not measured".into(), |s| {
                format!("{s:.2} s ({}/s)", m["prune_per_s"])
            }),
            "bounded batches; minutes at most",
            prune.map(|s| s <= 300.0),
            format!(
                "{} batches of at most 10,000, each a DELETE and a log_pruned event in one write \
                 unit; the chain verifies after",
                m["prune_batches"]
            ),
        ));
    }
    evidence
}
