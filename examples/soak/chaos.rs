//! The chaos driver: one fault at a time, at random times (seeded), each
//! on one instance: Redis cut (its proxy refuses and drops), PostgreSQL
//! black-holed (its proxy holds connections and forwards nothing), SIGKILL
//! then a restart on a new port, SIGSTOP then SIGCONT. The first four
//! faults are one of each kind, in random order. Instance 0 is never
//! killed, so one instance lives the whole run (the memory check).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fleet::Fleet;
use crate::model::{Ctx, Fault, FaultKind};
use crate::proxy::Mode;
use crate::rng::Rng;

fn at(us: u64) -> String {
    format!("+{:.1}s", us as f64 / 1e6)
}

/// Faults until `calm_from` (none starts after it); returns when the last
/// one has ended.
pub async fn chaos(
    fleet: Arc<Fleet>,
    ctx: Arc<Ctx>,
    mut rng: Rng,
    first: Duration,
    calm_from: Instant,
) -> anyhow::Result<()> {
    let mut order = FaultKind::ALL.to_vec();
    rng.shuffle(&mut order);
    let instances = fleet.procs.len();
    tokio::time::sleep(first).await;
    let mut n = 0usize;
    loop {
        let kind = if n < order.len() {
            order[n]
        } else {
            FaultKind::ALL[rng.below(4)]
        };
        let slot = if kind == FaultKind::Kill {
            1 + rng.below(instances - 1)
        } else {
            rng.below(instances)
        };
        let hold = match kind {
            FaultKind::Pause => rng.ms(1000, 6000),
            FaultKind::Kill => rng.ms(300, 2000),
            _ => rng.ms(2000, 6000),
        };
        // A restart takes a second or two more than the hold.
        if Instant::now() + hold + Duration::from_secs(3) >= calm_from || ctx.stopped() {
            return Ok(());
        }
        n += 1;
        let start = ctx.now();
        let note = match kind {
            FaultKind::RedisCut => {
                eprintln!(
                    "    [chaos] {} fault {n}: Redis cut for instance {slot}, {hold:.1?}",
                    at(start)
                );
                fleet.set_redis(slot, Mode::Cut);
                tokio::time::sleep(hold).await;
                fleet.set_redis(slot, Mode::Open);
                format!("held {hold:.1?}")
            }
            FaultKind::PgBlackHole => {
                eprintln!("    [chaos] {} fault {n}: PostgreSQL black-holed for instance {slot}, {hold:.1?}", at(start));
                fleet.set_pg(slot, Mode::BlackHole);
                tokio::time::sleep(hold).await;
                fleet.set_pg(slot, Mode::Open);
                format!("held {hold:.1?}")
            }
            FaultKind::Pause => {
                let pid = fleet.procs[slot].lock().await.pid;
                eprintln!(
                    "    [chaos] {} fault {n}: SIGSTOP instance {slot} (pid {pid}), {hold:.1?}",
                    at(start)
                );
                let stopped = Fleet::signal(pid, "-STOP");
                tokio::time::sleep(hold).await;
                let resumed = Fleet::signal(pid, "-CONT");
                anyhow::ensure!(stopped && resumed, "kill -STOP/-CONT {pid} failed");
                format!("pid {pid}, stopped {hold:.1?}")
            }
            FaultKind::Kill => {
                let old = fleet.procs[slot].lock().await.pid;
                eprintln!("    [chaos] {} fault {n}: SIGKILL instance {slot} (pid {old}), down {hold:.1?}", at(start));
                let (base, gen, pid) = fleet.kill_restart(slot, hold, || ctx.now()).await?;
                ctx.targets.set_instance(slot, base.clone(), gen);
                format!("pid {old} killed; process {gen} (pid {pid}) ready at {base}")
            }
        };
        let end = ctx.now();
        eprintln!("    [chaos] {} fault {n} over ({note})", at(end));
        ctx.faults.lock().push(Fault {
            kind,
            slot,
            start,
            end,
            note,
        });
        ctx.n_faults.fetch_add(1, Ordering::Relaxed);
        let gap = rng.ms(2000, 9000);
        tokio::time::sleep(gap).await;
    }
}
