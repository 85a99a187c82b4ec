//! The brute-force budget (G10): 10 consecutive failed guesses per
//! lowercased username lock it for 15 minutes, doubling per repeat up to 24
//! hours. A guess is counted when it is reserved, before its hash is
//! checked, so parallel guesses cannot slip past the budget.
//!
//! May import: what `domain` may (its top comment); no I/O.

use std::time::Duration;

use crate::clock::Timestamp;

/// The lockout policy: after `max_failures` consecutive failures lock for
/// `base`, doubling per repeat, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: i64,
    pub base: Duration,
    pub max: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            base: Duration::from_secs(15 * 60),
            max: Duration::from_secs(24 * 3600),
        }
    }
}

impl LockoutPolicy {
    /// Lock length for the `nth` lock (1-based).
    pub fn lock_length(&self, nth: i64) -> Duration {
        let doublings = (nth - 1).clamp(0, 30) as u32;
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// When the `nth` lock set at `now` ends.
    pub fn lock_until(&self, nth: i64, now: Timestamp) -> Timestamp {
        now.plus(self.lock_length(nth))
    }
}

/// What a guess reservation comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Within the budget: check the hash.
    Reserved,
    /// A lock is in force until then: refuse, count nothing.
    Locked { until: Timestamp },
    /// Past the budget with no lock in force: lock now (the `nth` lock of
    /// this username, until `until`) and refuse.
    LockNow { nth: i64, until: Timestamp },
}

/// Given the counts after a reservation's increment (the increment is
/// skipped while a lock is in force), decides the reservation.
pub fn after_reservation(
    failures: i64,
    lock_count: i64,
    locked_until: Option<Timestamp>,
    policy: &LockoutPolicy,
    now: Timestamp,
) -> Reservation {
    if let Some(until) = locked_until.filter(|u| *u > now) {
        return Reservation::Locked { until };
    }
    if failures <= policy.max_failures {
        return Reservation::Reserved;
    }
    let nth = lock_count + 1;
    Reservation::LockNow {
        nth,
        until: policy.lock_until(nth, now),
    }
}

/// Given the counts when a reserved guess failed, whether it locks the
/// username now: the guess that fills the budget does, unless a lock is
/// already in force. Returns `(nth, until)`.
pub fn after_failure(
    failures: i64,
    lock_count: i64,
    locked_until: Option<Timestamp>,
    policy: &LockoutPolicy,
    now: Timestamp,
) -> Option<(i64, Timestamp)> {
    let in_force = locked_until.is_some_and(|u| u > now);
    if failures < policy.max_failures || in_force {
        return None;
    }
    let nth = lock_count + 1;
    Some((nth, policy.lock_until(nth, now)))
}

/// Whether a right password may log in at `now`, given the username's
/// brute-force lock and the user's admin lock as they stand inside the
/// login's own transaction: a lock that committed while the hash ran wins.
pub fn may_log_in(
    throttle_until: Option<Timestamp>,
    admin_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), Timestamp> {
    match (
        throttle_until.filter(|u| *u > now),
        admin_until.filter(|u| *u > now),
    ) {
        (None, None) => Ok(()),
        (a, b) => Err(a.max(b).unwrap_or(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: i64 = 1_000_000;
    const NOW: Timestamp = Timestamp::from_ms(N);
    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 10,
        base: Duration::from_millis(1000),
        max: Duration::from_millis(3000),
    };

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_ms(ms)
    }

    #[test]
    fn given_guesses_within_the_budget_when_reserved_then_each_is_checked() {
        for failures in 1..=10 {
            assert_eq!(
                after_reservation(failures, 0, None, &POLICY, NOW),
                Reservation::Reserved
            );
        }
    }

    #[test]
    fn given_a_spent_budget_when_one_more_guess_comes_then_it_locks_now() {
        assert_eq!(
            after_reservation(11, 2, None, &POLICY, NOW),
            Reservation::LockNow {
                nth: 3,
                until: at(N + 3000)
            }
        );
        // An expired lock is no lock.
        assert_eq!(
            after_reservation(11, 0, Some(at(N - 1)), &POLICY, NOW),
            Reservation::LockNow {
                nth: 1,
                until: at(N + 1000)
            }
        );
    }

    #[test]
    fn given_a_lock_in_force_when_a_guess_comes_then_it_is_refused_uncounted() {
        assert_eq!(
            after_reservation(3, 1, Some(at(N + 5)), &POLICY, NOW),
            Reservation::Locked { until: at(N + 5) }
        );
    }

    #[test]
    fn given_a_full_budget_when_a_guess_fails_then_it_locks_once() {
        assert_eq!(after_failure(9, 0, None, &POLICY, NOW), None);
        assert_eq!(
            after_failure(10, 0, None, &POLICY, NOW),
            Some((1, at(N + 1000)))
        );
        assert_eq!(
            after_failure(10, 0, Some(at(N + 1)), &POLICY, NOW),
            None,
            "never a second lock while one is in force"
        );
    }

    #[test]
    fn lock_lengths_double_and_are_capped() {
        let ms = |n| POLICY.lock_length(n).as_millis();
        let lengths: Vec<u128> = (1..=5).map(ms).collect();
        assert_eq!(lengths, vec![1000, 2000, 3000, 3000, 3000]);
        assert_eq!(ms(i64::MAX), 3000);
        let default = LockoutPolicy::default();
        assert_eq!(default.lock_length(1), Duration::from_secs(15 * 60));
        assert_eq!(default.lock_length(99), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn given_a_right_password_when_a_lock_committed_meanwhile_then_the_lock_wins() {
        assert_eq!(may_log_in(None, None, NOW), Ok(()));
        assert_eq!(may_log_in(Some(at(N - 1)), Some(NOW), NOW), Ok(()));
        assert_eq!(may_log_in(Some(at(N + 7)), None, NOW), Err(at(N + 7)));
        assert_eq!(may_log_in(None, Some(at(N + 9)), NOW), Err(at(N + 9)));
        assert_eq!(
            may_log_in(Some(at(N + 7)), Some(at(N + 9)), NOW),
            Err(at(N + 9))
        );
    }
}
