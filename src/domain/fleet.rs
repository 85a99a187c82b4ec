//! G13 One fleet, one configuration: whether an instance may join the
//! fleet recorded in its store, with which issuer, and what a deliberate
//! issuer change does to the record. Instances that disagree on issuer or
//! audience answer 401 to each other's tokens, and one with another master
//! key has its notices rejected, so a mismatch refuses to start instead of
//! splitting the fleet silently.
//!
//! May import: what `domain` may (its top comment); no I/O.

/// The fleet's configuration as the store records it (the `fleet` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRecord {
    /// The `iss` of every access token the fleet issues.
    pub issuer: String,
    /// The `aud` of every access token.
    pub audience: String,
    /// `MasterKey::fingerprint` of the shared master key (never the key).
    pub key_fingerprint: String,
    /// Issuers the fleet used before, oldest first: their tokens verify
    /// until they expire.
    pub previous_issuers: Vec<String>,
}

/// What one instance was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured<'a> {
    /// `Settings::issuer`.
    pub issuer: &'a str,
    /// The variable that set `issuer`; `None` for the default
    /// (`http://RECALL_BIND`), which adopts the fleet's issuer.
    pub issuer_setting: Option<&'static str>,
    /// RECALL_AUDIENCE.
    pub audience: &'a str,
    /// `MasterKey::fingerprint` of RECALL_MASTER_KEY.
    pub key_fingerprint: &'a str,
}

impl Configured<'_> {
    /// The record a first instance writes.
    pub fn record(&self) -> FleetRecord {
        FleetRecord {
            issuer: self.issuer.to_owned(),
            audience: self.audience.to_owned(),
            key_fingerprint: self.key_fingerprint.to_owned(),
            previous_issuers: Vec::new(),
        }
    }
}

/// How an instance joins: the issuer it signs with and the issuers whose
/// tokens it accepts besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The fleet's issuer: this instance signs with it.
    pub issuer: String,
    /// The configured issuer was the default, and the fleet's replaced it.
    pub adopted: bool,
    /// The fleet's earlier issuers, accepted until their tokens expire.
    pub previous_issuers: Vec<String>,
}

/// A setting this instance disagrees with the fleet on: refuse to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Another issuer, set by `setting` (RECALL_ISSUER or RECALL_PUBLIC_URL).
    #[error(
        "{setting} is {ours:?} but this fleet's issuer is {fleet:?}: set {setting} to the \
         fleet's issuer, or change the fleet's with `recall admin set-issuer`"
    )]
    Issuer {
        setting: &'static str,
        ours: String,
        fleet: String,
    },
    /// Another RECALL_AUDIENCE.
    #[error("RECALL_AUDIENCE is {ours:?} but this fleet's audience is {fleet:?}")]
    Audience { ours: String, fleet: String },
    /// Another RECALL_MASTER_KEY, told by its fingerprint.
    #[error(
        "RECALL_MASTER_KEY has fingerprint {ours} but this fleet's master key has fingerprint \
         {fleet}: every instance needs the same RECALL_MASTER_KEY"
    )]
    MasterKey { ours: String, fleet: String },
}

/// Given the fleet's record and this instance's configuration: join
/// (adopting the fleet's issuer when ours is the default) or refuse.
pub fn join(fleet: &FleetRecord, ours: &Configured) -> Result<Membership, Mismatch> {
    // The key first: with another key nothing else this instance says can
    // be trusted to belong to the fleet.
    if ours.key_fingerprint != fleet.key_fingerprint {
        return Err(Mismatch::MasterKey {
            ours: ours.key_fingerprint.to_owned(),
            fleet: fleet.key_fingerprint.clone(),
        });
    }
    if ours.audience != fleet.audience {
        return Err(Mismatch::Audience {
            ours: ours.audience.to_owned(),
            fleet: fleet.audience.clone(),
        });
    }
    let adopted = match ours.issuer_setting {
        Some(setting) if ours.issuer != fleet.issuer => {
            return Err(Mismatch::Issuer {
                setting,
                ours: ours.issuer.to_owned(),
                fleet: fleet.issuer.clone(),
            })
        }
        Some(_) => false,
        None => ours.issuer != fleet.issuer,
    };
    Ok(Membership {
        issuer: fleet.issuer.clone(),
        adopted,
        previous_issuers: fleet.previous_issuers.clone(),
    })
}

/// Given the fleet's record, when the issuer is changed to `new`: the new
/// record (the old issuer joins the previous ones), or `None` when `new`
/// is the issuer already.
pub fn change_issuer(fleet: &FleetRecord, new: &str) -> Option<FleetRecord> {
    if fleet.issuer == new {
        return None;
    }
    // Going back to an earlier issuer makes it current, not previous.
    let mut previous: Vec<String> = fleet
        .previous_issuers
        .iter()
        .filter(|i| *i != new && **i != fleet.issuer)
        .cloned()
        .collect();
    previous.push(fleet.issuer.clone());
    Some(FleetRecord {
        issuer: new.to_owned(),
        previous_issuers: previous,
        ..fleet.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET_ISSUER: &str = "https://auth.example.com";

    fn fleet() -> FleetRecord {
        FleetRecord {
            issuer: FLEET_ISSUER.into(),
            audience: "recall-api".into(),
            key_fingerprint: "00112233aabbccdd".into(),
            previous_issuers: vec!["recall-old".into()],
        }
    }

    fn ours() -> Configured<'static> {
        Configured {
            issuer: FLEET_ISSUER,
            issuer_setting: Some("RECALL_PUBLIC_URL"),
            audience: "recall-api",
            key_fingerprint: "00112233aabbccdd",
        }
    }

    #[test]
    fn given_the_same_configuration_when_joining_then_it_joins_as_configured() {
        assert_eq!(
            join(&fleet(), &ours()),
            Ok(Membership {
                issuer: FLEET_ISSUER.into(),
                adopted: false,
                previous_issuers: vec!["recall-old".into()],
            })
        );
    }

    #[test]
    fn given_a_first_instance_when_it_joins_its_own_record_then_nothing_is_adopted() {
        let ours = Configured {
            issuer: "http://127.0.0.1:8080",
            issuer_setting: None,
            ..ours()
        };
        let joined = join(&ours.record(), &ours).unwrap();
        assert_eq!(joined.issuer, "http://127.0.0.1:8080");
        assert!(!joined.adopted);
        assert!(joined.previous_issuers.is_empty());
    }

    #[test]
    fn given_a_default_issuer_when_joining_then_the_fleets_is_adopted() {
        let ours = Configured {
            issuer: "http://127.0.0.1:8080",
            issuer_setting: None,
            ..ours()
        };
        let joined = join(&fleet(), &ours).unwrap();
        assert_eq!(joined.issuer, FLEET_ISSUER);
        assert!(joined.adopted);
    }

    #[test]
    fn given_another_explicit_issuer_when_joining_then_it_is_refused_naming_both() {
        let ours = Configured {
            issuer: "https://other.example",
            issuer_setting: Some("RECALL_ISSUER"),
            ..ours()
        };
        let refused = join(&fleet(), &ours).unwrap_err();
        assert_eq!(
            refused,
            Mismatch::Issuer {
                setting: "RECALL_ISSUER",
                ours: "https://other.example".into(),
                fleet: FLEET_ISSUER.into(),
            }
        );
        let text = refused.to_string();
        assert!(
            text.starts_with(
                "RECALL_ISSUER is \"https://other.example\" but this fleet's issuer is \
                 \"https://auth.example.com\""
            ),
            "{text}"
        );
    }

    #[test]
    fn given_another_audience_when_joining_then_it_is_refused_naming_both() {
        let ours = Configured {
            audience: "other",
            ..ours()
        };
        let refused = join(&fleet(), &ours).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "RECALL_AUDIENCE is \"other\" but this fleet's audience is \"recall-api\""
        );
    }

    #[test]
    fn given_another_master_key_when_joining_then_it_is_refused_naming_both_fingerprints() {
        // Even with a default issuer, which would otherwise be adopted.
        let ours = Configured {
            key_fingerprint: "ffeeddccbbaa9988",
            issuer_setting: None,
            audience: "other",
            ..ours()
        };
        let refused = join(&fleet(), &ours).unwrap_err();
        assert!(matches!(refused, Mismatch::MasterKey { .. }), "{refused:?}");
        let text = refused.to_string();
        assert!(text.contains("RECALL_MASTER_KEY"), "{text}");
        assert!(text.contains("ffeeddccbbaa9988"), "{text}");
        assert!(text.contains("00112233aabbccdd"), "{text}");
    }

    #[test]
    fn given_a_new_issuer_when_changed_then_the_old_one_becomes_previous() {
        let changed = change_issuer(&fleet(), "https://new.example").unwrap();
        assert_eq!(changed.issuer, "https://new.example");
        assert_eq!(changed.previous_issuers, ["recall-old", FLEET_ISSUER]);
        assert_eq!(changed.audience, "recall-api");
        assert_eq!(changed.key_fingerprint, "00112233aabbccdd");
    }

    #[test]
    fn given_the_current_issuer_when_changed_then_nothing_changes() {
        assert_eq!(change_issuer(&fleet(), FLEET_ISSUER), None);
    }

    #[test]
    fn given_a_previous_issuer_when_changed_back_then_it_is_current_and_not_previous() {
        let changed = change_issuer(&fleet(), "recall-old").unwrap();
        assert_eq!(changed.issuer, "recall-old");
        assert_eq!(changed.previous_issuers, [FLEET_ISSUER]);
    }
}
