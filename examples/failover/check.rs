//! What the run must show, from the clients' own records and the new
//! primary's `events` table: each check a name, a verdict and a detail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::load::{Kind, Rec, Revoked};

/// The failover's moments, µs since the run's epoch.
#[derive(Clone, Copy, Default, Serialize)]
pub struct Timeline {
    pub load_start: u64,
    /// `pg_ctl stop -m immediate` started and returned.
    pub stop: u64,
    pub stopped: u64,
    /// `pg_ctl promote` started and returned (promotion complete).
    pub promote: u64,
    pub promoted: u64,
    pub load_end: u64,
}

/// The new primary as read after the run.
pub struct LogView {
    pub in_recovery: bool,
    /// `recall_seq.last`.
    pub counter: i64,
    pub events: Vec<Ev>,
}

pub struct Ev {
    pub seq: i64,
    pub kind: String,
    pub user: Option<String>,
    pub sid: Option<String>,
}

/// Reads every event (seq order) and the sequence counter from `url`.
pub async fn read_log(url: &str) -> anyhow::Result<LogView> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(10), connect).await??;
    let driver = tokio::spawn(conn);
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    let counter: i64 = client
        .query_one("SELECT last FROM recall_seq WHERE id = 1", &[])
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT seq, type, user_id, session_id FROM events ORDER BY seq",
            &[],
        )
        .await?;
    let events = rows
        .iter()
        .map(|r| Ev {
            seq: r.get(0),
            kind: r.get(1),
            user: r.get(2),
            sid: r.get(3),
        })
        .collect();
    drop(client);
    let _ = driver.await;
    Ok(LogView {
        in_recovery,
        counter,
        events,
    })
}

#[derive(Serialize)]
pub struct Check {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
}

pub struct Rules {
    /// How long another instance may take to learn of a logout, ms.
    pub propagation_ms: u64,
    /// The most seconds from promotion until writes on every instance.
    pub bound_secs: f64,
    /// Instances under load (the sweep also asks a fresh one after them).
    pub instances: usize,
}

/// Seconds between two µs instants (negative if `b` is before `a`).
pub fn secs(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) / 1e6
}

fn check(name: &'static str, pass: bool, detail: String) -> Check {
    Check { name, pass, detail }
}

/// Up to five examples, for a detail line.
fn some<T: std::fmt::Display>(v: &[T]) -> String {
    let shown: Vec<String> = v.iter().take(5).map(ToString::to_string).collect();
    let more = v.len().saturating_sub(5);
    if more > 0 {
        format!("{} (+{more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

fn ok(status: u16) -> bool {
    (200..300).contains(&status)
}

pub fn run_checks(
    r: &Rules,
    t: &Timeline,
    recs: &[Rec],
    revoked: &[Arc<Revoked>],
    back_at: &[Option<u64>],
    log: &LogView,
) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(check(
        "the new primary is out of recovery",
        !log.in_recovery,
        format!("pg_is_in_recovery() = {}", log.in_recovery),
    ));

    // G6: commit order is sequence order, with no hole and no repeat.
    let n = log.events.len() as i64;
    let bad: Vec<String> = log
        .events
        .iter()
        .enumerate()
        .filter(|(i, e)| e.seq != *i as i64 + 1)
        .map(|(i, e)| format!("position {} holds seq {}", i + 1, e.seq))
        .collect();
    out.push(check(
        "seq is exactly 1..N: none skipped, none repeated",
        bad.is_empty() && log.counter == n,
        format!(
            "N = {n}, recall_seq.last = {}{}",
            log.counter,
            if bad.is_empty() {
                String::new()
            } else {
                format!("; {}", some(&bad))
            }
        ),
    ));

    out.push(acked_in_log(recs, log));

    // Never 500: a fleet that cannot write says 503; every call answered.
    let broken: Vec<String> = recs
        .iter()
        .filter(|q| q.status == 0 || (q.status >= 500 && q.status != 503))
        .map(|q| {
            format!(
                "{} on instance {} at +{:.3}s: {} {}",
                q.kind.name(),
                q.inst,
                secs(t.load_start, q.start),
                q.status,
                q.note.as_deref().unwrap_or("")
            )
        })
        .collect();
    out.push(check(
        "every answer is a 2xx, a 4xx or a 503: no 500, none missing",
        broken.is_empty(),
        if broken.is_empty() {
            format!("{} requests", recs.len())
        } else {
            format!("{} of {}: {}", broken.len(), recs.len(), some(&broken))
        },
    ));

    // While no server could commit, no write may be acknowledged.
    let lies: Vec<String> = recs
        .iter()
        .filter(|q| q.kind.writes() && ok(q.status))
        .filter(|q| q.start >= t.stopped && q.end <= t.promote)
        .map(|q| format!("{} on instance {}", q.kind.name(), q.inst))
        .collect();
    let refused = recs
        .iter()
        .filter(|q| q.kind.writes() && q.status == 503)
        .filter(|q| q.start >= t.stopped && q.start <= t.promote)
        .count();
    out.push(check(
        "with no primary, writes answer 503 and none is acknowledged",
        lies.is_empty() && refused > 0,
        format!(
            "{refused} writes answered 503 between the stop and the promotion; {} acknowledged{}",
            lies.len(),
            if lies.is_empty() {
                String::new()
            } else {
                format!(": {}", some(&lies))
            }
        ),
    ));

    out.push(revoked_refused(r, recs, revoked));

    // A live session's token refused, or its refresh token: an
    // acknowledged login or refresh the fleet forgot.
    let forgot: Vec<String> = recs
        .iter()
        .filter(|q| matches!(q.kind, Kind::Me | Kind::Refresh) && matches!(q.status, 401 | 403))
        .map(|q| {
            format!(
                "{} {} on instance {} at +{:.3}s",
                q.kind.name(),
                q.status,
                q.inst,
                secs(t.load_start, q.start)
            )
        })
        .collect();
    out.push(check(
        "live sessions keep working across the failover (no 401 for a live token)",
        forgot.is_empty(),
        if forgot.is_empty() {
            "none refused".to_owned()
        } else {
            some(&forgot)
        },
    ));

    // From the promotion request (pg_ctl promote starting) to the first
    // write sent after it that was acknowledged: the standby is writable a
    // moment before pg_ctl notices and returns.
    let times: Vec<String> = back_at
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Some(b) => format!("instance {i}: {:.2} s", secs(t.promote, *b)),
            None => format!("instance {i}: never"),
        })
        .collect();
    let fine = back_at
        .iter()
        .all(|b| b.is_some_and(|b| secs(t.promote, b) <= r.bound_secs));
    out.push(check(
        "every instance writes again soon after the promotion",
        fine,
        format!(
            "first acknowledged write sent after the promotion began, seconds after it: {} (bound {} s; pg_ctl promote took {:.2} s)",
            times.join(", "),
            r.bound_secs,
            secs(t.promote, t.promoted)
        ),
    ));
    out
}

/// Every acknowledged registration, login, refresh and logout is an event
/// of the new primary's log (G1 across the failover).
fn acked_in_log(recs: &[Rec], log: &LogView) -> Check {
    let mut of_type: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut refreshes: HashMap<&str, usize> = HashMap::new();
    for e in &log.events {
        let key = match e.kind.as_str() {
            "user_registered" => e.user.as_deref(),
            _ => e.sid.as_deref(),
        };
        if let Some(k) = key {
            of_type.entry(e.kind.as_str()).or_default().insert(k);
            if e.kind == "session_refreshed" {
                *refreshes.entry(k).or_default() += 1;
            }
        }
    }
    let mut acked: BTreeMap<&str, usize> = BTreeMap::new();
    let mut acked_refreshes: HashMap<String, usize> = HashMap::new();
    let mut missing = Vec::new();
    for q in recs.iter().filter(|q| q.kind.writes() && ok(q.status)) {
        *acked.entry(q.kind.name()).or_default() += 1;
        let (ty, key) = match q.kind {
            Kind::Register => ("user_registered", q.user),
            Kind::Login => ("login_succeeded", q.sid),
            Kind::Logout => ("logged_out", q.sid),
            _ => {
                if let Some(s) = q.sid {
                    *acked_refreshes.entry(s.to_string()).or_default() += 1;
                }
                continue;
            }
        };
        let found = key.is_some_and(|k| {
            of_type
                .get(ty)
                .is_some_and(|set| set.contains(k.to_string().as_str()))
        });
        if !found {
            missing.push(format!("{} {:?}", q.kind.name(), key));
        }
    }
    for (sid, n) in &acked_refreshes {
        let have = refreshes.get(sid.as_str()).copied().unwrap_or(0);
        if have < *n {
            missing.push(format!("refresh of {sid}: {n} acknowledged, {have} logged"));
        }
    }
    let counts: Vec<String> = acked.iter().map(|(k, v)| format!("{v} {k}")).collect();
    check(
        "every acknowledged write is in the new primary's log",
        missing.is_empty() && !acked.is_empty(),
        if missing.is_empty() {
            format!("acknowledged: {}", counts.join(", "))
        } else {
            format!("{} missing: {}", missing.len(), some(&missing))
        },
    )
}

/// A logged-out token is never accepted: by the instance that logged it
/// out from its 204 on, by the others from the propagation allowance on,
/// and by every instance (and a fresh one) after the failover.
fn revoked_refused(r: &Rules, recs: &[Rec], revoked: &[Arc<Revoked>]) -> Check {
    let allowance = r.propagation_ms * 1000;
    let mut accepted = Vec::new();
    let mut early = 0;
    let mut presented = 0;
    let mut last: HashMap<(usize, usize), u16> = HashMap::new();
    for q in recs {
        let (Some(i), Kind::Revoked | Kind::Sweep) = (q.tok, q.kind) else {
            continue;
        };
        let rev = &revoked[i];
        presented += 1;
        if q.kind == Kind::Sweep {
            last.insert((i, q.inst), q.status);
        }
        if !ok(q.status) {
            continue;
        }
        let binding = q.inst == rev.inst || q.start >= rev.ack + allowance;
        if q.start >= rev.ack && binding {
            accepted.push(format!(
                "session {} accepted by instance {} {:.3} s after the 204 of instance {}",
                rev.sid,
                q.inst,
                secs(rev.ack, q.start),
                rev.inst
            ));
        } else {
            early += 1;
        }
    }
    let unconfirmed: Vec<String> = last
        .iter()
        .filter(|(_, s)| **s != 401)
        .map(|((i, inst), s)| format!("session {} on instance {inst}: {s}", revoked[*i].sid))
        .collect();
    let swept = last.len();
    let expected = revoked.len() * (r.instances + 1);
    check(
        "a logged-out token is refused at every moment, by every instance",
        accepted.is_empty() && unconfirmed.is_empty() && swept == expected,
        format!(
            "{} logouts, {presented} presentations ({early} accepted by another instance within {} ms of the 204, allowed); after the failover {swept} of {expected} (token, instance) pairs answered 401{}{}",
            revoked.len(),
            r.propagation_ms,
            if accepted.is_empty() { String::new() } else { format!("; ACCEPTED: {}", some(&accepted)) },
            if unconfirmed.is_empty() { String::new() } else { format!("; not refused: {}", some(&unconfirmed)) },
        ),
    )
}

/// Requests by kind and status, for the report.
pub fn tally(recs: &[Rec], from: u64, to: u64) -> BTreeMap<&'static str, BTreeMap<u16, usize>> {
    let mut out: BTreeMap<&'static str, BTreeMap<u16, usize>> = BTreeMap::new();
    for q in recs.iter().filter(|q| q.start >= from && q.start < to) {
        *out.entry(q.kind.name())
            .or_default()
            .entry(q.status)
            .or_default() += 1;
    }
    out
}
