//! The service's own rows: peak RSS under login floods (measure 6),
//! login throughput and overload (measure 4), start-up with a long log and
//! memory per revoked session (measure 5). Imports the report's helpers;
//! reads only the results folder.

use super::*;

/// What the service rows read, kept for results.json.
pub(super) struct Service {
    pub(super) login: Value,
    pub(super) startup: Value,
    pub(super) memory: Value,
    pub(super) floods: Value,
}

/// Adds the service's rows to `rows`.
pub(super) fn rows(rows: &mut Vec<Row>, results: &Path) -> Service {
    let login = read_json(&results.join("login.json"));
    let startup = read_json(&results.join("startup.json"));
    let memory = read_json(&results.join("memory.json"));
    let floods = read_json(&results.join("flood.json"));
    for (key, label) in [
        ("concurrent", "6. peak RSS, 400 concurrent logins"),
        ("reset", "6. peak RSS, 400 logins reset mid-request"),
    ] {
        let f = &floods[key];
        let peak = num(&f["peak_rss_mib"]);
        rows.push(row(
            label,
            peak.map_or("not measured".into(), |p| format!("{p:.1} MiB")),
            "≤ 128 MiB",
            peak.map(|p| p <= 128.0),
            format!(
                "the release binary on the embedded default (SQLite), a fresh process; idle {} MiB, {} MiB \
                 after; kernel VmHWM; answers {}; hashes running at most {} with {} workers \
                 ({} refused at admission, {} skipped because their client was gone, {} checked)",
                f["idle_rss_mib"],
                f["rss_after_mib"],
                f["statuses"],
                f["hash_running_max"],
                f["hash_workers"],
                f["hash_rejected"],
                f["hash_abandoned"],
                f["hashes_checked"]
            ),
        ));
    }
    let lr = num(&login["ratio"]);
    let sqlite_ratio = num(&login["sqlite_ratio"]).unwrap_or(f64::NAN);
    rows.push(row(
        "4. login throughput vs raw argon2id",
        match (num(&login["login_per_s"]), num(&login["raw_verifies_per_s"]), lr) {
            (Some(l), Some(r), Some(x)) => {
                format!("PostgreSQL {l:.1}/s vs {r:.1}/s: {x:.2}; SQLite {sqlite_ratio:.2}")
            }
            _ => "not measured".into(),
        },
        "≥ 0.9 × raw on both stores",
        lr.map(|r| r >= 0.9 && sqlite_ratio >= 0.9),
        format!(
            "Recall::login on PostgreSQL, {} callers, {} hash workers; raw = verify_blocking on {} threads; \
             median of {} alternating rounds (login {}/s, raw {}/s); {} new PostgreSQL connections per login; \
             on SQLite: {sqlite_ratio:.2}{}",
            login["callers"],
            login["hash_workers"],
            login["cores"],
            login["login_rounds"].as_array().map_or(0, Vec::len),
            login["login_rounds"],
            login["raw_rounds"],
            login["pg_connections_opened_per_login"],
            if lr.is_some_and(|r| r < 0.9) {
                "; the CPU left for argon2 is what the login's store work, token signing and the \
                 PostgreSQL backend do not take on the same 2 cores"
            } else {
                ""
            }
        ),
    ));
    let o = &login["overload"];
    let bounded = match (
        num(&o["served_p99_ms"]),
        num(&o["queue_drain_ms"]),
        num(&o["refused_503"]),
    ) {
        (Some(p), Some(drain), Some(refused)) => Some(refused > 0.0 && p <= 1.5 * drain),
        _ => None,
    };
    rows.push(row(
        "4. login p99 at 2× sustainable rate",
        match (num(&o["served_p99_ms"]), num(&o["refused_503"]), num(&o["sent"])) {
            (Some(p), Some(r), Some(s)) => format!("p99 {p:.0} ms; {r:.0} of {s:.0} answered 503"),
            _ => "not measured".into(),
        },
        "bounded: 503s, p99 ≤ 1.5 × queue drain",
        bounded,
        format!(
            "offered {}/s for {} s (open loop); admitted logins served at {}/s, so the bounded queue \
             ({} running + {} waiting) drains in {} ms; the 503s answered in p99 {} ms",
            o["offered_per_s"],
            o["seconds"],
            o["service_per_s"],
            login["hash_workers"],
            login["hash_queue"],
            o["queue_drain_ms"],
            o["refused_p99_ms"]
        ),
    ));
    let ready = num(&startup["ready_ms"]);
    rows.push(row(
        "5. start-up to ready, 1,000,000 events in the log",
        ready.map_or("not measured".into(), |m| format!("{m:.0} ms")),
        "≤ 2 s",
        ready.map(|m| m <= 2000.0),
        format!(
            "SQLite, filled through Store::append_raw in {} s (PostgreSQL takes ≈130 µs per appended event, \
             ≈2 min for the million); {} events in the log, {} in the window; open + migrate + \
             startup::start_with, worst of {} ms; of which window snapshot {} ms, fold {} ms",
            startup["fill_s"],
            startup["log_events"],
            startup["window_events"],
            startup["ready_ms_runs"],
            startup["snapshot_ms"],
            startup["fold_ms"]
        ),
    ));
    let per = num(&memory["bytes_per_session"]);
    rows.push(row(
        "5. memory per revoked session",
        per.map_or("not measured".into(), |b| format!("{b:.1} bytes")),
        "≤ 100 bytes",
        per.map(|b| b <= 100.0),
        format!(
            "process RSS delta (/proc/self/statm) over {} revoked sessions folded into a RevocationState",
            memory["revoked_sessions"]
        ),
    ));

    Service {
        login,
        startup,
        memory,
        floods,
    }
}
