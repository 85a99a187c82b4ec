//! Signing-key lifecycle: what a rotation does to the previous key, and
//! which keys retirement takes.
//!
//! May import: what `domain` may (its top comment); no I/O.

use std::time::Duration;

use crate::clock::Timestamp;

/// Lifecycle of a signing key (shared with the verifier crate).
pub use recall_verifier::state::KeyStatus;

/// What becomes of the previous active key in a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousKey {
    /// Compromised: every token it signed is refused at once.
    Revoked,
    /// Scheduled: it keeps verifying its tokens until `retire_after`, when
    /// the last of them has expired.
    Verifying { retire_after: Timestamp },
}

impl PreviousKey {
    /// Its status from now on.
    pub fn status(&self) -> KeyStatus {
        match self {
            PreviousKey::Revoked => KeyStatus::Revoked,
            PreviousKey::Verifying { .. } => KeyStatus::Verifying,
        }
    }

    /// When it retires, if it does.
    pub fn retire_after(&self) -> Option<Timestamp> {
        match self {
            PreviousKey::Revoked => None,
            PreviousKey::Verifying { retire_after } => Some(*retire_after),
        }
    }
}

/// A rotation at `now`: the previous key is revoked when `compromised`,
/// else it verifies for `retention` more (the longest access-token
/// lifetime plus leeway, so no token it signed outlives it).
pub fn rotation(compromised: bool, retention: Duration, now: Timestamp) -> PreviousKey {
    if compromised {
        PreviousKey::Revoked
    } else {
        PreviousKey::Verifying {
            retire_after: now.plus(retention),
        }
    }
}

/// Whether a verifying key whose retirement is due at `retire_after` is
/// retired at `now`.
pub fn retires(retire_after: Option<Timestamp>, now: Timestamp) -> bool {
    recall_verifier::state::retires(retire_after.map(Timestamp::ms), now.ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_ms(ms)
    }
    const RETENTION: Duration = Duration::from_millis(310_000);

    #[test]
    fn given_a_compromised_key_when_rotated_then_it_is_revoked_at_once() {
        let p = rotation(true, RETENTION, at(1_000));
        assert_eq!(p, PreviousKey::Revoked);
        assert_eq!((p.status(), p.retire_after()), (KeyStatus::Revoked, None));
    }

    #[test]
    fn given_a_scheduled_rotation_then_the_old_key_verifies_until_its_tokens_expire() {
        let p = rotation(false, RETENTION, at(1_000));
        assert_eq!(
            p,
            PreviousKey::Verifying {
                retire_after: at(311_000)
            }
        );
        assert_eq!(
            (p.status(), p.retire_after()),
            (KeyStatus::Verifying, Some(at(311_000)))
        );
    }

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for s in [
            KeyStatus::Active,
            KeyStatus::Verifying,
            KeyStatus::Retired,
            KeyStatus::Revoked,
        ] {
            assert_eq!(KeyStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(KeyStatus::parse("pending"), None);
    }

    #[test]
    fn given_a_verifying_key_then_it_retires_exactly_when_due() {
        assert!(!retires(Some(at(311_000)), at(310_999)));
        assert!(retires(Some(at(311_000)), at(311_000)));
        assert!(!retires(None, at(i64::MAX)));
    }
}
