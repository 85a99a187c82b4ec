//! Admin locks ("like a card lock"): how long, and within what bounds.
//!
//! May import: what `domain` may (its top comment); no I/O.

use std::time::Duration;

use crate::clock::Timestamp;

/// Default admin lock: 24 hours.
pub const DEFAULT_LOCK_SECS: i64 = 86_400;
/// Longest lock an admin can set: ten years.
pub const MAX_LOCK_SECS: i64 = 10 * 365 * 86_400;

/// Until when a lock of `duration_secs` (default a day) set at `now`
/// lasts; `Err` with the allowed range (seconds) when out of bounds.
pub fn lock_until(duration_secs: Option<i64>, now: Timestamp) -> Result<Timestamp, (i64, i64)> {
    let secs = duration_secs.unwrap_or(DEFAULT_LOCK_SECS);
    if !(1..=MAX_LOCK_SECS).contains(&secs) {
        return Err((1, MAX_LOCK_SECS));
    }
    Ok(now.plus(Duration::from_secs(secs.unsigned_abs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_ms(ms)
    }

    #[test]
    fn given_no_duration_then_a_day() {
        assert_eq!(lock_until(None, at(5)), Ok(at(5 + 86_400_000)));
    }

    #[test]
    fn given_a_duration_in_bounds_then_that_long() {
        assert_eq!(lock_until(Some(1), at(0)), Ok(at(1000)));
        assert_eq!(
            lock_until(Some(MAX_LOCK_SECS), at(0)),
            Ok(at(MAX_LOCK_SECS * 1000))
        );
    }

    #[test]
    fn given_a_duration_out_of_bounds_then_refused_with_the_range() {
        for bad in [0, -5, MAX_LOCK_SECS + 1, i64::MAX] {
            assert_eq!(
                lock_until(Some(bad), at(0)),
                Err((1, MAX_LOCK_SECS)),
                "{bad}"
            );
        }
    }
}
