//! The brute-force budget (G10): 10 consecutive failed guesses per
//! lowercased username lock it for 15 minutes, doubling per repeat up to 24
//! hours. A guess is counted when it is reserved, before its hash is
//! checked, so parallel guesses cannot slip past the budget.

/// The lockout policy: after `max_failures` consecutive failures lock for
/// `base_ms`, doubling per repeat, capped at `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: i64,
    pub base_ms: i64,
    pub max_ms: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            base_ms: 15 * 60 * 1000,
            max_ms: 24 * 3600 * 1000,
        }
    }
}

impl LockoutPolicy {
    /// Lock length for the `nth` lock (1-based).
    pub fn lock_ms(&self, nth: i64) -> i64 {
        let doublings = (nth - 1).clamp(0, 30) as u32;
        self.base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }

    /// When the `nth` lock set at `now` ends.
    pub fn lock_until(&self, nth: i64, now: i64) -> i64 {
        now.saturating_add(self.lock_ms(nth))
    }
}

/// What a guess reservation comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Within the budget: check the hash.
    Reserved,
    /// A lock is in force until then: refuse, count nothing.
    Locked { until: i64 },
    /// Past the budget with no lock in force: lock now (the `nth` lock of
    /// this username, until `until`) and refuse.
    LockNow { nth: i64, until: i64 },
}

/// Given the counts after a reservation's increment (the increment is
/// skipped while a lock is in force), decides the reservation.
pub fn after_reservation(
    failures: i64,
    lock_count: i64,
    locked_until: Option<i64>,
    policy: &LockoutPolicy,
    now: i64,
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
    locked_until: Option<i64>,
    policy: &LockoutPolicy,
    now: i64,
) -> Option<(i64, i64)> {
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
    throttle_until: Option<i64>,
    admin_until: Option<i64>,
    now: i64,
) -> Result<(), i64> {
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

    const NOW: i64 = 1_000_000;
    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 10,
        base_ms: 1000,
        max_ms: 3000,
    };

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
                until: NOW + 3000
            }
        );
        // An expired lock is no lock.
        assert_eq!(
            after_reservation(11, 0, Some(NOW - 1), &POLICY, NOW),
            Reservation::LockNow {
                nth: 1,
                until: NOW + 1000
            }
        );
    }

    #[test]
    fn given_a_lock_in_force_when_a_guess_comes_then_it_is_refused_uncounted() {
        assert_eq!(
            after_reservation(3, 1, Some(NOW + 5), &POLICY, NOW),
            Reservation::Locked { until: NOW + 5 }
        );
    }

    #[test]
    fn given_a_full_budget_when_a_guess_fails_then_it_locks_once() {
        assert_eq!(after_failure(9, 0, None, &POLICY, NOW), None);
        assert_eq!(
            after_failure(10, 0, None, &POLICY, NOW),
            Some((1, NOW + 1000))
        );
        assert_eq!(
            after_failure(10, 0, Some(NOW + 1), &POLICY, NOW),
            None,
            "never a second lock while one is in force"
        );
    }

    #[test]
    fn lock_lengths_double_and_are_capped() {
        let lengths: Vec<i64> = (1..=5).map(|n| POLICY.lock_ms(n)).collect();
        assert_eq!(lengths, vec![1000, 2000, 3000, 3000, 3000]);
        assert_eq!(POLICY.lock_ms(i64::MAX), 3000);
        assert_eq!(LockoutPolicy::default().lock_ms(1), 15 * 60 * 1000);
        assert_eq!(LockoutPolicy::default().lock_ms(99), 24 * 3600 * 1000);
    }

    #[test]
    fn given_a_right_password_when_a_lock_committed_meanwhile_then_the_lock_wins() {
        assert_eq!(may_log_in(None, None, NOW), Ok(()));
        assert_eq!(may_log_in(Some(NOW - 1), Some(NOW), NOW), Ok(()));
        assert_eq!(may_log_in(Some(NOW + 7), None, NOW), Err(NOW + 7));
        assert_eq!(may_log_in(None, Some(NOW + 9), NOW), Err(NOW + 9));
        assert_eq!(may_log_in(Some(NOW + 7), Some(NOW + 9), NOW), Err(NOW + 9));
    }
}
