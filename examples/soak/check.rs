//! The invariants, from the clients' own records and the event log.
//!
//! The bound a revoked token may still be accepted within, after the
//! revoking call was acknowledged at T, by a request that *started* at S:
//!
//! - 0 on the very process that served the call (G2, read-your-writes);
//! - `bound` (G3, 1 s by default) on every other healthy instance and on
//!   the sidecars;
//! - `poll + bound` (G4) on a healthy instance when the serving instance
//!   was itself under a fault from 1 s before T to S (its notice, published
//!   from an outbox after the answer, may be late or lost, so the others
//!   learn from the log poll);
//! - `staleness + bound` (G5) on an instance that was under a fault
//!   (Redis cut, PostgreSQL black-holed, paused, killed and restarted) at
//!   any time in [T, S], counting `staleness` after the fault ended as part
//!   of it; and on a sidecar when any instance was (it may follow that one).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::model::{Fault, Kind, Prop, Req, Revocation, Rss, Target, TokenMeta};

pub struct Rules {
    pub bound_us: u64,
    pub poll_us: u64,
    pub staleness_us: u64,
    pub run_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Serving,
    Healthy,
    NoticeLost,
    Degraded,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Serving => "the serving process (G2)",
            Class::Healthy => "healthy (G3)",
            Class::NoticeLost => "serving instance under a fault (G4)",
            Class::Degraded => "target under a fault (G5)",
        }
    }
}

pub struct Invariant {
    pub name: &'static str,
    pub pass: bool,
    pub detail: String,
    pub examples: Vec<String>,
}

pub struct MemRow {
    pub process: String,
    pub lifetime_s: f64,
    pub baseline_mib: Option<f64>,
    pub end_mib: f64,
    pub max_mib: f64,
    pub verdict: &'static str,
}

pub struct Checked {
    pub invariants: Vec<Invariant>,
    /// Propagation (ms) by class and target kind ("instance"/"sidecar").
    pub propagation: BTreeMap<(Class, &'static str), Vec<f64>>,
    pub never_rejected: BTreeMap<Class, usize>,
    pub rejection_status: BTreeMap<u16, usize>,
    /// (how many, latest ms after the acknowledgement).
    pub accepted_within_bound: BTreeMap<Class, (usize, f64)>,
    pub memory: Vec<MemRow>,
    pub errors_in_faults: usize,
    pub errors_outside: usize,
    pub errors_outside_examples: Vec<String>,
    /// 503 answers by [instance 0 / sidecar 1][outside 0 / during 1 a fault].
    pub s503: [[usize; 2]; 2],
    /// Authenticated requests by [instance / sidecar].
    pub auth: [usize; 2],
    /// 401 to tokens no acknowledged call had revoked, by [instance / sidecar].
    pub live_401: [usize; 2],
}

impl Rules {
    fn degraded(&self, faults: &[Fault], slot: Option<usize>, a: u64, b: u64) -> bool {
        faults.iter().any(|f| {
            slot.is_none_or(|s| s == f.slot) && f.start <= b && f.end + self.staleness_us >= a
        })
    }

    pub fn bound(
        &self,
        faults: &[Fault],
        rev: &Revocation,
        target: Target,
        start: u64,
    ) -> (u64, Class) {
        let around = rev.ack.saturating_sub(1_000_000);
        match target {
            Target::Instance { slot, .. } => {
                if target == rev.target {
                    return (0, Class::Serving);
                }
                if self.degraded(faults, Some(slot as usize), rev.ack, start) {
                    return (self.staleness_us + self.bound_us, Class::Degraded);
                }
                if let Target::Instance { slot: s, .. } = rev.target {
                    if self.degraded(faults, Some(s as usize), around, start) {
                        return (self.poll_us + self.bound_us, Class::NoticeLost);
                    }
                }
                (self.bound_us, Class::Healthy)
            }
            Target::Sidecar(_) => {
                if self.degraded(faults, None, around, start) {
                    (self.staleness_us + self.bound_us, Class::Degraded)
                } else {
                    (self.bound_us, Class::Healthy)
                }
            }
        }
    }
}

fn ms(us: u64) -> String {
    format!("+{:.3}s", us as f64 / 1e6)
}

/// Everything the run recorded.
pub struct Records<'a> {
    pub reqs: &'a [Req],
    pub revs: &'a [Revocation],
    pub props: &'a [Prop],
    pub faults: &'a [Fault],
    pub rss: &'a [Rss],
    pub tokens: &'a [TokenMeta],
}

type Pred<'a> = Box<dyn Fn(&Value) -> bool + 'a>;

pub fn check(rules: &Rules, r: &Records<'_>, log: &Log) -> Checked {
    let Records {
        reqs,
        revs,
        props,
        faults,
        rss,
        tokens,
    } = *r;
    let mut out = Checked {
        invariants: Vec::new(),
        propagation: BTreeMap::new(),
        never_rejected: BTreeMap::new(),
        rejection_status: BTreeMap::new(),
        accepted_within_bound: BTreeMap::new(),
        memory: Vec::new(),
        errors_in_faults: 0,
        errors_outside: 0,
        errors_outside_examples: Vec::new(),
        s503: [[0; 2]; 2],
        auth: [0; 2],
        live_401: [0; 2],
    };
    // --- revoked tokens rejected within the bound (and G2) -----------------
    let mut by_token: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, q) in reqs.iter().enumerate() {
        if q.kind.is_auth() {
            by_token.entry(q.token).or_default().push(i);
        }
    }
    let (mut checked, mut checked_g2) = (0usize, 0usize);
    let (mut bad, mut bad_g2) = (Vec::new(), Vec::new());
    let mut revoked_at: HashMap<u32, u64> = HashMap::new();
    for rev in revs {
        for &t in &rev.tokens {
            let e = revoked_at.entry(t).or_insert(rev.ack);
            *e = (*e).min(rev.ack);
            for &qi in by_token.get(&t).map_or(&[][..], |v| v.as_slice()) {
                let q = &reqs[qi];
                if q.start <= rev.ack || q.status < 100 {
                    continue;
                }
                let (b, class) = rules.bound(faults, rev, q.target, q.start);
                if class == Class::Serving {
                    checked_g2 += 1;
                } else {
                    checked += 1;
                }
                if !(200..300).contains(&q.status) {
                    continue;
                }
                if q.start > rev.ack + b {
                    let line = format!(
                        "{} acknowledged at {} by {} (seq {:?}); {} with token {t} (user {}, session {}) on {} started {} ({:.0} ms later, bound {} ms, {}) answered {}",
                        rev.kind.name(), ms(rev.ack), rev.target.label(), rev.seq, q.kind.name(),
                        tokens[t as usize].user, tokens[t as usize].session, q.target.label(),
                        ms(q.start), (q.start - rev.ack) as f64 / 1e3, b / 1000, class.name(), q.status
                    );
                    if class == Class::Serving {
                        bad_g2.push(line)
                    } else {
                        bad.push(line)
                    }
                } else {
                    let e = out.accepted_within_bound.entry(class).or_default();
                    e.0 += 1;
                    e.1 = e.1.max((q.start - rev.ack) as f64 / 1e3);
                }
            }
        }
    }
    let tokens: usize = revs.iter().map(|r| r.tokens.len()).sum();
    out.invariants.push(Invariant {
        name: "no revoked token accepted past its bound (G3/G4/G5)",
        pass: bad.is_empty(),
        detail: format!(
            "{} revoking calls acknowledged, {tokens} tokens revoked; {checked} later requests with them checked; {} accepted past the bound",
            revs.len(), bad.len()
        ),
        examples: bad.into_iter().take(10).collect(),
    });
    out.invariants.push(Invariant {
        name: "the serving process rejects at once (G2)",
        pass: bad_g2.is_empty(),
        detail: format!(
            "{checked_g2} later requests to the process that acknowledged; {} accepted",
            bad_g2.len()
        ),
        examples: bad_g2.into_iter().take(10).collect(),
    });
    // --- every acknowledged call in the log -----------------------------------
    out.invariants.push(log_has_every_call(revs, log));
    out.invariants.push(sequence(log));
    // --- no 5xx other than 503 ---------------------------------------------------
    let mut other5xx: BTreeMap<(Kind, u16), usize> = BTreeMap::new();
    let mut examples = Vec::new();
    for q in reqs {
        if q.status >= 500 && q.status != 503 {
            *other5xx.entry((q.kind, q.status)).or_default() += 1;
            if examples.len() < 10 {
                examples.push(format!(
                    "{} on {} at {}: {}",
                    q.kind.name(),
                    q.target.label(),
                    ms(q.start),
                    q.status
                ));
            }
        }
        let in_fault = |q: &Req| match q.target {
            Target::Instance { slot, .. } => faults.iter().any(|f| {
                f.slot == slot as usize && f.start <= q.end && f.end + 1_000_000 >= q.start
            }),
            // A sidecar fails closed while the instance it follows is
            // out of reach, for up to its staleness bound after.
            Target::Sidecar(_) => faults
                .iter()
                .any(|f| f.start <= q.end && f.end + rules.staleness_us >= q.start),
        };
        if q.status < 100 {
            if in_fault(q) {
                out.errors_in_faults += 1;
            } else {
                out.errors_outside += 1;
                if out.errors_outside_examples.len() < 5 {
                    out.errors_outside_examples.push(format!(
                        "{} on {} at {}: {}",
                        q.kind.name(),
                        q.target.label(),
                        ms(q.start),
                        crate::report::status_name(q.status)
                    ));
                }
            }
        }
        let side = usize::from(matches!(q.target, Target::Sidecar(_)));
        if q.status == 503 {
            out.s503[side][usize::from(in_fault(q))] += 1;
        }
        if q.kind.is_auth() {
            out.auth[side] += 1;
        }
        if q.kind.is_auth()
            && !q.probe
            && q.status == 401
            && revoked_at.get(&q.token).is_none_or(|&t| t > q.start)
        {
            out.live_401[side] += 1;
        }
    }
    let total: usize = other5xx.values().sum();
    out.invariants.push(Invariant {
        name: "no 5xx other than 503",
        pass: total == 0,
        detail: format!(
            "{} requests; {} answered 503; {total} other 5xx{}",
            reqs.len(),
            reqs.iter().filter(|q| q.status == 503).count(),
            if total == 0 {
                String::new()
            } else {
                format!(
                    " ({})",
                    other5xx
                        .iter()
                        .map(|((k, s), n)| format!("{} {s}: {n}", k.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        examples,
    });
    // --- propagation -------------------------------------------------------------
    for p in props {
        let rev = &revs[p.rev];
        let at = p.rejected.map_or(rev.ack + 1, |(end, _)| end);
        let (_, class) = rules.bound(faults, rev, p.target, at);
        let kind = if matches!(p.target, Target::Sidecar(_)) {
            "sidecar"
        } else {
            "instance"
        };
        match p.rejected {
            Some((end, status)) => {
                out.propagation
                    .entry((class, kind))
                    .or_default()
                    .push(end.saturating_sub(rev.ack) as f64 / 1e3);
                *out.rejection_status.entry(status).or_default() += 1;
            }
            None => *out.never_rejected.entry(class).or_default() += 1,
        }
    }
    for v in out.propagation.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    memory(rules, rss, &mut out);
    out
}

/// The log as read back: every event, and the head seen after.
pub struct Log {
    pub events: Vec<Value>,
    pub head: i64,
    pub error: Option<String>,
}

fn log_has_every_call(revs: &[Revocation], log: &Log) -> Invariant {
    let mut by_seq: HashMap<i64, usize> = HashMap::new();
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, e) in log.events.iter().enumerate() {
        if let Some(s) = e["seq"].as_i64() {
            by_seq.insert(s, i);
        }
        let key = (
            e["type"].as_str().unwrap_or("").to_owned(),
            e["user_id"].as_str().unwrap_or("").to_owned(),
        );
        by_key.entry(key).or_default().push(i);
    }
    let mut used = vec![false; log.events.len()];
    let mut missing = Vec::new();
    let mut order: Vec<&Revocation> = revs.iter().collect();
    order.sort_by_key(|r| r.ack);
    for rev in order {
        let sess = rev.session.map(|s| s.to_string()).unwrap_or_default();
        let has = |e: &Value, field: &str| {
            e["data"][field]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&sess)))
        };
        let cause = |e: &Value| e["data"]["cause"].as_str().unwrap_or("").to_owned();
        let (ty, pred): (&str, Pred<'_>) = match rev.kind {
            Kind::Logout => (
                "logged_out",
                Box::new(|e| e["session_id"].as_str() == Some(sess.as_str())),
            ),
            Kind::DeleteSession => (
                "session_revoked",
                Box::new(|e| e["session_id"].as_str() == Some(sess.as_str()) && cause(e) == "user"),
            ),
            Kind::AdminDeleteSession => (
                "session_revoked",
                Box::new(|e| {
                    e["session_id"].as_str() == Some(sess.as_str()) && cause(e) == "admin"
                }),
            ),
            Kind::LogoutAll => (
                "user_sessions_revoked",
                Box::new(|e| cause(e) == "user" && has(e, "session_ids")),
            ),
            Kind::LogoutOthers => (
                "user_sessions_revoked",
                Box::new(|e| cause(e) == "user" && !has(e, "session_ids")),
            ),
            Kind::Password => (
                "password_changed",
                Box::new(|e| e["data"]["kept_session_id"].as_str() == Some(sess.as_str())),
            ),
            Kind::AdminRevoke => ("user_sessions_revoked", Box::new(|e| cause(e) == "admin")),
            Kind::AdminLock => ("user_locked", Box::new(|_| true)),
            Kind::AdminUnlock => ("user_unlocked", Box::new(|_| true)),
            _ => {
                let kid = rev.kid.clone();
                let compromised = rev.kind == Kind::RotateCompromised;
                (
                    "key_rotated",
                    Box::new(move |e| {
                        e["data"]["kid"].as_str() == kid.as_deref()
                            && e["data"]["compromised"].as_bool() == Some(compromised)
                    }),
                )
            }
        };
        let user = rev.user.map(|u| u.to_string()).unwrap_or_default();
        let fits = |i: usize| {
            let e = &log.events[i];
            e["type"].as_str() == Some(ty) && e["user_id"].as_str().unwrap_or("") == user && pred(e)
        };
        let found = match rev.seq {
            Some(seq) => by_seq.get(&seq).copied().filter(|&i| fits(i) && !used[i]),
            None => by_key
                .get(&(ty.to_owned(), user.clone()))
                .and_then(|v| v.iter().copied().find(|&i| !used[i] && fits(i))),
        };
        match found {
            Some(i) => used[i] = true,
            None => missing.push(format!(
                "{} acknowledged at {} by {} (user {user}, session {sess}, seq {:?}): no `{ty}` event",
                rev.kind.name(), ms(rev.ack), rev.target.label(), rev.seq
            )),
        }
    }
    Invariant {
        name: "every acknowledged revoking call is in the log",
        pass: missing.is_empty() && log.error.is_none(),
        detail: match &log.error {
            Some(e) => format!("the log could not be read: {e}"),
            None => format!(
                "{} acknowledged calls, {} found in {} events, {} missing",
                revs.len(),
                revs.len() - missing.len(),
                log.events.len(),
                missing.len()
            ),
        },
        examples: missing.into_iter().take(10).collect(),
    }
}

fn sequence(log: &Log) -> Invariant {
    let (mut expected, mut gaps, mut repeats) = (1i64, 0i64, 0usize);
    let mut examples = Vec::new();
    for e in &log.events {
        let seq = e["seq"].as_i64().unwrap_or(-1);
        if seq == expected {
            expected += 1;
        } else if seq > expected {
            gaps += seq - expected;
            if examples.len() < 10 {
                examples.push(format!("{} to {} missing", expected, seq - 1));
            }
            expected = seq + 1;
        } else {
            repeats += 1;
            if examples.len() < 10 {
                examples.push(format!(
                    "seq {seq} again (or out of order) after {}",
                    expected - 1
                ));
            }
        }
    }
    let last = expected - 1;
    let short = log.head > last;
    if short {
        examples.push(format!(
            "the head is {} but the log read ends at {last}",
            log.head
        ));
    }
    Invariant {
        name: "the log's sequence is 1..=head, nothing skipped or repeated",
        pass: gaps == 0 && repeats == 0 && !short && log.error.is_none() && !log.events.is_empty(),
        detail: format!("{} events read (seq 1 to {last}), head {}; {gaps} skipped, {repeats} repeated or out of order", log.events.len(), log.head),
        examples,
    }
}

fn memory(rules: &Rules, rss: &[Rss], out: &mut Checked) {
    let mut by: BTreeMap<&str, Vec<&Rss>> = BTreeMap::new();
    for r in rss {
        by.entry(&r.process).or_default().push(r);
    }
    let (mut pass, mut checked) = (true, 0);
    let mut examples = Vec::new();
    for (name, mut v) in by {
        v.sort_by_key(|r| r.t);
        let born = v[0].born;
        let last = v[v.len() - 1];
        let life = last.t.saturating_sub(born);
        let mib = |k: u64| k as f64 / 1024.0;
        let warm = born + rules.run_us / 5;
        let base = v.iter().find(|r| r.t >= warm).map(|r| r.kib);
        let max = v.iter().map(|r| r.kib).max().unwrap_or(0);
        let verdict = match base {
            Some(b) if life * 2 >= rules.run_us => {
                checked += 1;
                if last.kib as f64 <= b as f64 * 1.10 {
                    "PASS"
                } else {
                    pass = false;
                    examples.push(format!(
                        "{name}: {:.1} MiB after warm-up, {:.1} MiB at the end",
                        mib(b),
                        mib(last.kib)
                    ));
                    "FAIL"
                }
            }
            _ => "not checked (lived under half the run)",
        };
        out.memory.push(MemRow {
            process: name.to_owned(),
            lifetime_s: life as f64 / 1e6,
            baseline_mib: base.map(mib),
            end_mib: mib(last.kib),
            max_mib: mib(max),
            verdict,
        });
    }
    out.invariants.push(Invariant {
        name: "memory stays flat (RSS at the end within 10% of RSS after warm-up)",
        pass: pass && checked > 0,
        detail: format!(
            "{checked} processes lived at least half the run and were checked; {} samples",
            rss.len()
        ),
        examples,
    });
}
