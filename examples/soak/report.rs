//! The Markdown report (bench/SOAK.md, or SOAK_REPORT) and the summary
//! lines on stdout.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::check::{Checked, Class};
use crate::model::{Fault, FaultKind, Kind, Req, Revocation};

pub struct RunFacts {
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub secs_planned: u64,
    pub secs_load: f64,
    pub seed: u64,
    pub clients: usize,
    pub max_in_flight: usize,
    pub rate: f64,
    pub instances: usize,
    pub sidecars: usize,
    pub bound_ms: u64,
    pub users: usize,
    pub retired_users: u64,
    pub logs: String,
}

pub fn status_name(s: u16) -> &'static str {
    match s {
        crate::model::ERR_CONNECT => "connection refused/failed",
        crate::model::ERR_TIMEOUT => "timeout",
        crate::model::ERR_OTHER => "transport error",
        _ => "HTTP",
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stats(v: &[f64]) -> String {
    if v.is_empty() {
        return "— | — | —".into();
    }
    format!(
        "{:.2} | {:.2} | {:.2}",
        pct(v, 50.0),
        pct(v, 99.0),
        v[v.len() - 1]
    )
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// A status column: its title and which statuses it counts.
type Column = (&'static str, fn(u16) -> bool);

const COLUMNS: [Column; 11] = [
    ("2xx", |s| (200..300).contains(&s)),
    ("401", |s| s == 401),
    ("403", |s| s == 403),
    ("404", |s| s == 404),
    ("409", |s| s == 409),
    ("429", |s| s == 429),
    ("503", |s| s == 503),
    ("other HTTP", |s| {
        s >= 100 && !matches!(s, 200..=299 | 401 | 403 | 404 | 409 | 429 | 503)
    }),
    ("refused", |s| s == crate::model::ERR_CONNECT),
    ("timeout", |s| s == crate::model::ERR_TIMEOUT),
    ("error", |s| s == crate::model::ERR_OTHER),
];

/// The invariant lines (also printed on stdout).
pub fn invariant_lines(c: &Checked) -> Vec<String> {
    c.invariants
        .iter()
        .map(|i| {
            format!(
                "{} {}: {}",
                if i.pass { "PASS" } else { "FAIL" },
                i.name,
                i.detail
            )
        })
        .collect()
}

/// The headline propagation figure: healthy targets other than the serving one.
pub fn headline(c: &Checked) -> Vec<f64> {
    sorted(
        c.propagation
            .iter()
            .filter(|((class, _), _)| *class == Class::Healthy)
            .flat_map(|(_, v)| v.iter().copied())
            .collect(),
    )
}

pub fn render(
    f: &RunFacts,
    c: &Checked,
    reqs: &[Req],
    revs: &[Revocation],
    faults: &[Fault],
) -> String {
    let mut md = String::new();
    let pass = c.invariants.iter().all(|i| i.pass);
    let _ = writeln!(md, "# Soak with chaos\n");
    let _ = writeln!(
        md,
        "`scripts/soak.sh {}` on {}, commit {}; {}.\n",
        f.secs_planned, f.date, f.commit, f.machine
    );
    let _ = writeln!(
        md,
        "**{}.** {:.0} s of mixed load on {} `recall serve` processes (the release binary; PostgreSQL and Redis on loopback, \
         each instance through its own proxies) and {} `recall verifier` sidecars, with one fault at a time injected by a seeded \
         chaos driver. Seed **{}** (`SOAK_SEED={} scripts/soak.sh {}` replays the same choices; a real fleet's timing still varies). \
         {} client tasks at about {:.0} steps/s in all, at most {} requests in flight; {} users registered, {} of them retired \
         by an outcome the client could not know. RECALL_ACCESS_TTL_SECS={}, RECALL_MAX_STALENESS_MS={}, RECALL_POLL_INTERVAL_MS={}. \
         Bound for a healthy instance: **{} ms**. Logs: `{}`.\n",
        if pass { "Every invariant holds" } else { "Some invariants FAIL" },
        f.secs_load, f.instances, f.sidecars, f.seed, f.seed, f.secs_planned, f.clients, f.rate, f.max_in_flight,
        f.users, f.retired_users, crate::ACCESS_TTL_SECS, crate::STALENESS_MS, crate::POLL_MS, f.bound_ms, f.logs
    );
    let _ = writeln!(
        md,
        "## Invariants\n\n| invariant | result | numbers |\n|---|---|---|"
    );
    for i in &c.invariants {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            i.name,
            if i.pass { "PASS" } else { "**FAIL**" },
            i.detail
        );
    }
    for i in c.invariants.iter().filter(|i| !i.examples.is_empty()) {
        let _ = writeln!(
            md,
            "\n{} ({}), first cases:\n",
            i.name,
            if i.pass { "PASS" } else { "FAIL" }
        );
        for e in &i.examples {
            let _ = writeln!(md, "- {e}");
        }
    }
    let _ = writeln!(
        md,
        "\n### Also counted (not invariants)\n\n\
         A fault \"on\" a request: for an instance, a fault on that instance during the request (or up to 1 s before); \
         for a sidecar, a fault on any instance during the request or up to {} ms before (the sidecar may follow it).\n\n\
         | what | instances | sidecars |\n|---|---:|---:|\n\
         | authenticated requests (`/v1/me`, `/v1/auth/verify`) | {} | {} |\n\
         | 503 during a fault | {} | {} |\n\
         | 503 with no fault on | {} | {} |\n\
         | 401 to a token no acknowledged call had revoked | {} | {} |\n\n\
         Transport errors (no HTTP answer): {} during a fault on their instance (killed, paused, cut off: expected), \
         {} with no fault on{}.",
        crate::STALENESS_MS,
        c.auth[0], c.auth[1],
        c.s503[0][1], c.s503[1][1],
        c.s503[0][0], c.s503[1][0],
        c.live_401[0], c.live_401[1],
        c.errors_in_faults,
        c.errors_outside,
        if c.errors_outside_examples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", c.errors_outside_examples.join("; "))
        },
    );
    if c.s503[1][0] > 0 {
        let _ = writeln!(
            md,
            "\n**Sidecars failed closed with no fault on:** {} of their {} authenticated requests answered 503 while \
             no instance was under a fault. This is not a safety violation (503 is allowed), but a sidecar whose upstream \
             is healthy should not fail closed. The cause, reproduced by hand on one instance and one sidecar: a verifier \
             counts itself current only when a `head` frame of `/v1/revocations/stream` finds its cursor at the head, and \
             its cursor moves only on `revocations` frames, which the stream sends only for events with revocation items. \
             While the newest event in the log is a login, refresh or registration, no `head` finds it caught up, so \
             {} ms after the last revocation it refuses every token, until the next revocation event.",
            c.s503[1][0],
            c.auth[1],
            crate::STALENESS_MS
        );
    }
    // --- counts ---------------------------------------------------------------------
    let _ = writeln!(md, "\n## Requests by kind and status\n");
    let head: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let _ = writeln!(
        md,
        "| kind | total | {} |\n|---|---:|{}",
        head.join(" | "),
        "---:|".repeat(head.len())
    );
    let mut rows: BTreeMap<(Kind, bool), Vec<u16>> = BTreeMap::new();
    for q in reqs {
        rows.entry((q.kind, q.probe)).or_default().push(q.status);
    }
    for ((kind, probe), statuses) in &rows {
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|(_, f)| statuses.iter().filter(|&&s| f(s)).count().to_string())
            .collect();
        let label = if *probe {
            format!("{} (revoked token)", kind.name())
        } else {
            kind.name().to_owned()
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} |",
            statuses.len(),
            cells.join(" | ")
        );
    }
    let _ = writeln!(md, "| **all** | {} | |", reqs.len());
    let _ = writeln!(md, "\n## Revocations by kind\n\n| kind | sent | acknowledged | tokens revoked |\n|---|---:|---:|---:|");
    for kind in Kind::ALL.into_iter().filter(|k| k.is_revoking()) {
        let sent = reqs.iter().filter(|q| q.kind == kind).count();
        let acked: Vec<&Revocation> = revs.iter().filter(|r| r.kind == kind).collect();
        let tokens: usize = acked.iter().map(|r| r.tokens.len()).sum();
        let _ = writeln!(
            md,
            "| {} | {sent} | {} | {tokens} |",
            kind.name(),
            acked.len()
        );
    }
    let _ = writeln!(
        md,
        "| **all** | {} | {} | {} |",
        reqs.iter().filter(|q| q.kind.is_revoking()).count(),
        revs.len(),
        revs.iter().map(|r| r.tokens.len()).sum::<usize>()
    );
    let _ = writeln!(
        md,
        "\n## Faults\n\n| kind | count | total time (s) |\n|---|---:|---:|"
    );
    for k in FaultKind::ALL {
        let v: Vec<&Fault> = faults.iter().filter(|x| x.kind == k).collect();
        let secs = v
            .iter()
            .fold(0.0, |a, x| a + (x.end - x.start) as f64 / 1e6);
        let _ = writeln!(md, "| {} | {} | {secs:.1} |", k.name(), v.len());
    }
    let _ = writeln!(
        md,
        "\n| # | fault | instance | start | end | note |\n|---:|---|---:|---:|---:|---|"
    );
    for (i, x) in faults.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | +{:.1}s | +{:.1}s | {} |",
            i + 1,
            x.kind.name(),
            x.slot,
            x.start as f64 / 1e6,
            x.end as f64 / 1e6,
            x.note
        );
    }
    // --- latencies --------------------------------------------------------------------
    let _ = writeln!(
        md,
        "\n## Latencies (ms)\n\n| requests | n | p50 | p99 | max |\n|---|---:|---:|---:|---:|"
    );
    let lat = |pred: &dyn Fn(&Req) -> bool| {
        sorted(
            reqs.iter()
                .filter(|q| q.status >= 100 && pred(q))
                .map(|q| (q.end - q.start) as f64 / 1e3)
                .collect(),
        )
    };
    type Pred = Box<dyn Fn(&Req) -> bool>;
    let rows: Vec<(&str, Pred)> = vec![
        (
            "authenticated, every kind (live tokens)",
            Box::new(|q: &Req| q.kind.is_auth() && !q.probe),
        ),
        (
            "GET /v1/me",
            Box::new(|q: &Req| q.kind == Kind::Me && !q.probe),
        ),
        (
            "GET /v1/auth/verify (instance)",
            Box::new(|q: &Req| q.kind == Kind::Verify && !q.probe),
        ),
        (
            "GET /v1/auth/verify (sidecar)",
            Box::new(|q: &Req| q.kind == Kind::SidecarVerify && !q.probe),
        ),
        ("login", Box::new(|q: &Req| q.kind == Kind::Login)),
        ("refresh", Box::new(|q: &Req| q.kind == Kind::Refresh)),
    ];
    for (label, pred) in rows {
        let v = lat(&*pred);
        let _ = writeln!(md, "| {label} (answered) | {} | {} |", v.len(), stats(&v));
    }
    let acked = sorted(
        revs.iter()
            .map(|r| (r.ack - r.start) as f64 / 1e3)
            .collect(),
    );
    let _ = writeln!(
        md,
        "| revoking calls (acknowledged) | {} | {} |",
        acked.len(),
        stats(&acked)
    );
    for kind in Kind::ALL.into_iter().filter(|k| k.is_revoking()) {
        let v = sorted(
            revs.iter()
                .filter(|r| r.kind == kind)
                .map(|r| (r.ack - r.start) as f64 / 1e3)
                .collect(),
        );
        if !v.is_empty() {
            let _ = writeln!(
                md,
                "| &nbsp;&nbsp;{} | {} | {} |",
                kind.name(),
                v.len(),
                stats(&v)
            );
        }
    }
    // --- propagation ---------------------------------------------------------------------
    let h = headline(c);
    let _ = writeln!(
        md,
        "\n## Propagation (ms)\n\nFrom a revoking call's acknowledgement until a target first answered one of its tokens \
         with anything but 2xx, probing every instance and sidecar from the acknowledgement on (back to back for 50 ms, \
         then every 3 ms; the figure includes the rejecting probe's own round trip, so it is an upper bound). **Healthy targets other than the \
         serving one: p50 {:.2}, p99 {:.2}, max {:.2} ms over {} (revocation, target) pairs.** Rejections by status: {}.\n",
        pct(&h, 50.0), pct(&h, 99.0), h.last().copied().unwrap_or(f64::NAN), h.len(),
        c.rejection_status.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(md, "| target | class | n | p50 | p99 | max | not rejected within the probe window |\n|---|---|---:|---:|---:|---:|---:|");
    for ((class, kind), v) in &c.propagation {
        let _ = writeln!(
            md,
            "| {kind} | {} | {} | {} | {} |",
            class.name(),
            v.len(),
            stats(v),
            c.never_rejected
                .get(class)
                .map_or("".into(), |n| n.to_string())
        );
    }
    let _ = writeln!(
        md,
        "\nLater 2xx answers within the bound (propagation still under way, allowed): {}.",
        c.accepted_within_bound
            .iter()
            .map(|(k, (n, latest))| format!(
                "{}: {n}, the latest {latest:.1} ms after the acknowledgement",
                k.name()
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // --- memory -----------------------------------------------------------------------------
    let _ = writeln!(
        md,
        "\n## Memory (VmRSS, MiB)\n\nSampled every 2 s from /proc/<pid>/status. Rule: a process that lived at least half \
         the run is checked; its baseline is the first sample after its warm-up (the first 20% of the run's length from its \
         start), and its last sample must be within 10% of that. Instance 0 is never killed (so one instance always spans \
         the run); restarted processes start their own baseline and are checked only if they lived half the run.\n"
    );
    let _ = writeln!(md, "| process | lived (s) | after warm-up | end | max | verdict |\n|---|---:|---:|---:|---:|---|");
    for m in &c.memory {
        let base = m.baseline_mib.map_or("—".into(), |b| format!("{b:.1}"));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {base} | {:.1} | {:.1} | {} |",
            m.process, m.lifetime_s, m.end_mib, m.max_mib, m.verdict
        );
    }
    let _ = writeln!(
        md,
        "\n## Rules\n\n\
         - A request *started* more than the bound after a revoking call's acknowledgement T, with a token that call revoked, \
           and answered 2xx is a violation. Bounds: 0 on the process that acknowledged (G2); {b} ms on other healthy \
           instances and on sidecars (G3); {p} ms + {b} ms on a healthy instance when the serving instance was under a \
           fault between 1 s before T and the request (its Redis notice, published from an outbox after the answer, may \
           be late or lost; G4, the log poll); {s} ms + {b} ms on an instance under \
           a fault at any time between T and the request, counting {s} ms after a fault ended as part of it, and on a \
           sidecar when any instance was (G5).\n\
         - Tokens revoked: logout and session deletes, that session's tokens; logout-all, admin revoke-sessions and lock, \
           every token of the user; logout-others and password change, every token of the user but the calling session's; \
           a compromised rotation, every token signed with the previous key.\n\
         - A call with no answer, or a 5xx other than a 503 for staleness or a full hash pool, may or may not have happened: \
           it creates no obligation, and the client retires the user (or the session, for a refresh) it touched.\n\
         - The log is read in full after the load with `GET /v1/admin/events` (limit 1000, `after` = `next_after`); each \
           acknowledged call must have its event (matched by seq when the answer gave one, else by type, user, session and \
           cause), and seq must run 1, 2, ... up to the head (`GET /v1/revocations` head_seq).",
        b = f.bound_ms, p = crate::POLL_MS, s = crate::STALENESS_MS
    );
    md
}
