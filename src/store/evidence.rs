//! The log as evidence: chaining events written before the chain existed,
//! verifying the chain, signed checkpoints of it, and retention (deleting
//! old events in bounded batches, each recorded by a `log_pruned` event so
//! the chain verifies across the cut).
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::chain::{self, Hash, Verdict, Walker, GENESIS, HASHED_COLS};
use super::rows::{append, first};
use super::sql::{Tx, Val};
use super::{Store, StoreError};
use crate::clock::Timestamp;
use crate::events::{Envelope, Event, Stamp};

/// Rows read (verification, chaining) or deleted (retention) at a time.
pub const PAGE: i64 = 10_000;

/// A checkpoint is due after this many events...
pub const CHECKPOINT_EVERY_EVENTS: i64 = 10_000;
/// ...or this long (ms), whichever comes first (if anything was appended).
pub const CHECKPOINT_EVERY_MS: i64 = 3_600_000;

/// What a checkpoint signs: the chain up to `through_seq` hashes to `head`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointClaims {
    pub iss: String,
    pub through_seq: i64,
    pub head: String,
    pub iat: i64,
}

/// Signs checkpoint claims: the kid and the compact JWS.
pub type Signer = Box<dyn FnOnce(&CheckpointClaims) -> Result<(String, String), String> + Send>;

/// A checkpoint as the log holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Checkpoint {
    /// The checkpoint event's own seq.
    pub seq: i64,
    pub at: Timestamp,
    pub through_seq: i64,
    pub head: String,
    pub kid: String,
    pub jws: String,
}

impl Checkpoint {
    fn of(env: &Envelope) -> Option<Checkpoint> {
        match &env.event {
            Event::LogCheckpoint {
                through_seq,
                head,
                kid,
                jws,
            } => Some(Checkpoint {
                seq: env.seq,
                at: env.at,
                through_seq: *through_seq,
                head: head.clone(),
                kid: kid.clone(),
                jws: jws.clone(),
            }),
            _ => None,
        }
    }
}

/// The latest event of `kind` that `tx` sees.
async fn latest(tx: &mut dyn Tx, kind: &str) -> Result<Option<Envelope>, StoreError> {
    let sql = format!(
        "SELECT {} FROM events WHERE type = $1 ORDER BY seq DESC LIMIT 1",
        super::EVENT_COLS
    );
    let rows = tx.query(&sql, &[kind.into()]).await?;
    rows.first().map(super::rows::envelope).transpose()
}

/// The stored `hash` of event `seq`, if it is there and has one.
async fn hash_of(tx: &mut dyn Tx, seq: i64) -> Result<Option<Hash>, StoreError> {
    let rows = tx
        .query("SELECT hash FROM events WHERE seq = $1", &[seq.into()])
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.0.first())
        .and_then(chain::stored))
}

impl Store {
    /// Chains the events that have no hash yet (those written before the
    /// chain existed, or by an older build), from the first of them to the
    /// head, in one transaction holding the counter row: appends wait, and
    /// the head is right when they go on. Nothing to do is one indexed read.
    pub(super) async fn chain_unlinked(&self) -> Result<i64, StoreError> {
        self.write(|mut tx| async move {
            let from = tx
                .query("SELECT min(seq) FROM events WHERE hash IS NULL", &[])
                .await?;
            let Some(from) = first(from)?.opt_int(0)? else {
                return Ok(0);
            };
            let end = tx.take_seqs(0).await?;
            let mut prev = match hash_of(&mut *tx, from - 1).await? {
                Some(h) => h,
                None => GENESIS,
            };
            let (mut next, mut done) = (from, 0i64);
            loop {
                let sql = format!(
                    "SELECT {HASHED_COLS} FROM events WHERE seq >= $1 ORDER BY seq LIMIT $2"
                );
                let rows = tx.query(&sql, &[next.into(), PAGE.into()]).await?;
                let Some(last) = rows.last().and_then(|r| r.0.first().cloned()) else {
                    break;
                };
                let mut updates = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut cols = row.0;
                    let Some(seq) = cols.first().cloned() else {
                        continue;
                    };
                    if let Some(slot) = cols.get_mut(10) {
                        *slot = prev.to_vec().into();
                    }
                    prev = chain::digest(&cols);
                    updates.push((
                        "UPDATE events SET prev_hash = $1, hash = $2 WHERE seq = $3",
                        vec![cols[10].clone(), prev.to_vec().into(), seq],
                    ));
                    done += 1;
                }
                tx.exec_later(updates).await?;
                tracing::info!(chained = done, "chaining the log's existing events");
                next = match last {
                    Val::Int(seq) => seq + 1,
                    _ => return Err(StoreError::Corrupt("a seq that is not a number".into())),
                };
            }
            if done > 0 {
                tracing::info!(chained = done, through = end.last, "the log is chained");
                tx.set_head(prev).await?;
            }
            tx.commit().await?;
            Ok(done)
        })
        .await
    }

    /// Verifies the chain from `from` (0: from the first event kept) to the
    /// head, in one snapshot: every row's hash, every link, no seq missing,
    /// and the counter row's head. Across a retention cut the first kept
    /// event must link to the latest `log_pruned`'s anchor.
    pub async fn verify_log(&self, from: i64) -> Result<Verdict, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let counter = tx
            .query("SELECT last, head FROM recall_seq WHERE id = 1", &[])
            .await?;
        let counter = first(counter)?;
        let (last, head) = (counter.int(0)?, chain::head_of(counter.opt_text(1)?)?);
        let pruned = match latest(&mut *tx, "log_pruned").await? {
            Some(Envelope {
                event:
                    Event::LogPruned {
                        through_seq,
                        anchor,
                        ..
                    },
                ..
            }) => Some((through_seq, chain::from_hex(&anchor)?)),
            _ => None,
        };
        let kept_from = pruned.map_or(1, |(through, _)| through + 1);
        let start = from.max(kept_from).max(1);
        let anchor = if start == 1 {
            Some(GENESIS)
        } else if start == kept_from {
            pruned.map(|(_, anchor)| anchor)
        } else {
            None
        };
        if start > last {
            return Ok(Verdict {
                ok: true,
                verified_through: last,
                first_bad_seq: None,
            });
        }
        let mut walker = Walker::new(start, anchor);
        let sql =
            format!("SELECT {HASHED_COLS}, hash FROM events WHERE seq >= $1 ORDER BY seq LIMIT $2");
        loop {
            let rows = tx.query(&sql, &[walker.next().into(), PAGE.into()]).await?;
            let n = rows.len() as i64;
            for row in &rows {
                walker.row(row);
            }
            if walker.failed() || n < PAGE {
                break;
            }
        }
        Ok(walker.finish(last, head))
    }

    /// The latest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read(|mut tx| async move {
            Ok(latest(&mut *tx, "log_checkpoint")
                .await?
                .as_ref()
                .and_then(Checkpoint::of))
        })
        .await
    }

    /// Appends a signed checkpoint of the chain up to the last event, when
    /// one is due (`force`: always, if anything was appended since the last
    /// one). Decided and signed inside the appending transaction, so the
    /// checkpoint's head is exactly the hash its own event links to.
    pub async fn checkpoint(
        &self,
        sign: Signer,
        issuer: String,
        force: bool,
        stamp: &Stamp,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let end = tx.take_seqs(0).await?;
            let before = latest(&mut *tx, "log_checkpoint").await?;
            let before = before.as_ref().and_then(Checkpoint::of);
            // Since the last checkpoint, or else since the log began.
            let (from_seq, from_at) = match &before {
                Some(cp) => (cp.seq, cp.at.ms()),
                None => {
                    let oldest = tx
                        .query("SELECT at FROM events ORDER BY seq LIMIT 1", &[])
                        .await?;
                    (0, oldest.first().map_or(Ok(stamp.at.ms()), |r| r.int(0))?)
                }
            };
            let since = end.last - from_seq;
            let due =
                since >= CHECKPOINT_EVERY_EVENTS || stamp.at.ms() - from_at >= CHECKPOINT_EVERY_MS;
            if since <= 0 || !(force || due) {
                return Ok(None);
            }
            let claims = CheckpointClaims {
                iss: issuer,
                through_seq: end.last,
                head: chain::hex(&end.prev),
                iat: stamp.at.unix_secs(),
            };
            let (kid, jws) = sign(&claims).map_err(StoreError::Query)?;
            let event = Event::LogCheckpoint {
                through_seq: claims.through_seq,
                head: claims.head,
                kid,
                jws,
            };
            let envs = append(&mut *tx, vec![event], &stamp).await?;
            tx.commit().await?;
            Ok(envs.first().and_then(Checkpoint::of))
        })
        .await
    }

    /// Deletes up to `PAGE` of the oldest events written before `cutoff`
    /// (and already delivered to every SSF stream not disabled), and records
    /// the batch as a `log_pruned` event. `None` when nothing was due.
    pub async fn prune_log(
        &self,
        cutoff: Timestamp,
        stamp: &Stamp,
    ) -> Result<Option<Envelope>, StoreError> {
        self.write_as(stamp, move |mut tx, stamp| async move {
            let end = tx.take_seqs(0).await?;
            let floor = tx
                .query(
                    "SELECT min(cursor_seq) FROM ssf_streams WHERE status <> 'disabled'",
                    &[],
                )
                .await?;
            let floor = first(floor)?.opt_int(0)?.unwrap_or(end.last);
            let rows = tx
                .query(
                    "SELECT seq, at, hash FROM events ORDER BY seq LIMIT $1",
                    &[PAGE.into()],
                )
                .await?;
            let mut through: Option<(i64, Option<Hash>)> = None;
            let mut count = 0i64;
            for r in &rows {
                let (seq, at) = (r.int(0)?, r.int(1)?);
                if at >= cutoff.ms() || seq > floor {
                    break;
                }
                through = Some((seq, r.0.get(2).and_then(chain::stored)));
                count += 1;
            }
            let Some((through_seq, anchor)) = through else {
                return Ok(None);
            };
            let anchor = anchor.ok_or_else(|| {
                StoreError::Corrupt(format!("event {through_seq} has no chain hash"))
            })?;
            tx.exec("DELETE FROM events WHERE seq <= $1", &[through_seq.into()])
                .await?;
            let event = Event::LogPruned {
                through_seq,
                count,
                anchor: chain::hex(&anchor),
            };
            let mut envs = append(&mut *tx, vec![event], &stamp).await?;
            tx.commit().await?;
            Ok(envs.pop())
        })
        .await
    }
}
