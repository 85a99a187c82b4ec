//! Time as the log keeps it. A `Timestamp` is milliseconds since the Unix
//! epoch and nothing else: seconds (JWT `exp`, durations a client sends)
//! come in and go out through named conversions, and spans are
//! `std::time::Duration`, so milliseconds and seconds cannot be mixed up.
//!
//! May import: nothing of Recall's (the bottom layer). The layers:
//! docs/DESIGN.md, "Parts".

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Now, by the system clock.
    pub fn now() -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    /// From milliseconds since the epoch (as the store keeps them).
    pub const fn from_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// From whole seconds since the epoch (a JWT `exp` or `iat`).
    pub const fn from_unix_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn ms(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `d` later, saturating.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(span_ms(d)))
    }

    /// `d` earlier, saturating.
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(span_ms(d)))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    /// RFC 3339, UTC, millisecond precision.
    pub fn rfc3339(self) -> String {
        rfc3339(self.0)
    }
}

/// A span in whole milliseconds, saturating at `i64::MAX`.
pub fn span_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 UTC (millisecond precision) for a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            Timestamp::from_ms(1_700_000_000_123).rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn seconds_and_milliseconds_convert_by_name_only() {
        let t = Timestamp::from_unix_secs(1_700_000_000);
        assert_eq!(t.ms(), 1_700_000_000_000);
        assert_eq!(
            t.plus(Duration::from_millis(999)).unix_secs(),
            1_700_000_000
        );
        assert_eq!(Timestamp::from_ms(-1).unix_secs(), -1);
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let end = Timestamp::from_ms(i64::MAX - 5);
        assert_eq!(end.plus(Duration::from_secs(1)).ms(), i64::MAX);
        assert_eq!(end.plus(Duration::MAX).ms(), i64::MAX);
        assert_eq!(Timestamp::EPOCH.since(end), Duration::ZERO);
        assert_eq!(
            end.since(end.minus(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
    }
}
