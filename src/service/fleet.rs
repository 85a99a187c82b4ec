//! G13 One fleet, one configuration, at the service's edges: joining the
//! fleet recorded in the store when an instance starts, and the one
//! deliberate way to change the fleet's issuer.
//!
//! May import: what `service` may (its top comment) (and its sibling modules, never in a circle).

use super::Admin;
use crate::clock::Timestamp;
use crate::config::Settings;
use crate::domain::{self, join, Configured};
use crate::error::Error;
use crate::events::{Envelope, Meta, Stamp};
use crate::store::{Store, StoreError};

/// Longest issuer `set-issuer` accepts (a URL, in practice).
const MAX_ISSUER_LEN: usize = 2048;

/// Joins the fleet recorded in the store, before any key is generated or
/// state built: records this instance's configuration when it is the
/// first, adopts the fleet's issuer when ours is the default, and refuses
/// an issuer, audience or master key that differs. Returns the settings to
/// run with and the fleet's previous issuers. Only PostgreSQL is shared by
/// a fleet; an embedded SQLite store runs as configured.
pub async fn join_fleet(
    mut settings: Settings,
    store: &Store,
) -> anyhow::Result<(Settings, Vec<String>)> {
    if settings.database_url.is_none() {
        return Ok((settings, Vec::new()));
    }
    let fingerprint = settings.master_key.fingerprint();
    let ours = Configured {
        issuer: &settings.issuer,
        issuer_setting: settings.issuer_source.setting(),
        audience: &settings.audience,
        key_fingerprint: &fingerprint,
    };
    let (fleet, first) = store.record_fleet(&ours.record(), Timestamp::now()).await?;
    let membership = join(&fleet, &ours)?;
    if first {
        tracing::info!(
            issuer = %fleet.issuer,
            audience = %fleet.audience,
            key_fingerprint = %fleet.key_fingerprint,
            "recorded this fleet's configuration: every later instance must share it"
        );
    }
    if membership.adopted {
        tracing::info!(
            issuer = %membership.issuer,
            instead_of = %settings.issuer,
            "adopted the fleet's recorded issuer"
        );
    }
    settings.issuer = membership.issuer;
    Ok((settings, membership.previous_issuers))
}

impl Admin {
    /// Makes `issuer` the fleet's token issuer (`recall admin set-issuer`):
    /// the change is an event, tokens of the previous issuer verify on
    /// every instance until they expire, running instances accept the new
    /// one's at once and issue with it after a restart. `None` when it is
    /// the issuer already.
    pub async fn set_issuer(&self, issuer: &str, meta: &Meta) -> Result<Option<Envelope>, Error> {
        if self.settings.database_url.is_none() {
            return Err(Error::invalid(
                "issuer",
                "set-issuer changes a PostgreSQL fleet's recorded issuer; an instance on \
                 SQLite takes its issuer from RECALL_PUBLIC_URL or RECALL_ISSUER",
            ));
        }
        if issuer.is_empty() || issuer.trim() != issuer || issuer.len() > MAX_ISSUER_LEN {
            return Err(Error::invalid(
                "issuer",
                format!("1 to {MAX_ISSUER_LEN} characters, no surrounding spaces"),
            ));
        }
        let changed = self
            .store
            .set_issuer(
                {
                    let issuer = issuer.to_owned();
                    Box::new(move |current| domain::change_issuer(current, &issuer))
                },
                &Stamp::now(meta),
            )
            .await
            .map_err(|e| match e {
                // Every start on PostgreSQL records the row, this one's too.
                StoreError::NotFound => Error::Internal("no fleet is recorded".into()),
                e => e.into(),
            })?;
        if let Some(env) = &changed {
            self.committed(std::slice::from_ref(env)).await;
        }
        Ok(changed)
    }
}
