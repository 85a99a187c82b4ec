//! Redis behind Sentinel (`redis+sentinel://`): a fleet finds the master
//! through the sentinels, keeps enforcing revocations through the log while
//! the master is down (G4), and follows the promoted replica, its notices,
//! publishing and DPoP replay checks alike. The failover test needs the
//! processes scripts/sentinel.sh starts (a primary, a replica, three
//! sentinels) and runs only there (`--ignored`); the others run anywhere.

use std::time::Duration;

use recall::bus::notice::NoticeAuth;
use recall::bus::{redis::RedisBus, Bus};
use uuid::Uuid;

use crate::fixtures::stop_all;
use crate::helpers::{all_reject, eventually, wait_subscribed, Backend, Kind, TestApp};

/// How often the fleet reads the log in the failover test.
const POLL: Duration = Duration::from_millis(2_000);
/// What a notice must beat: well under `POLL`, so only a notice explains it.
const NOTICE: Duration = Duration::from_millis(400);
/// What the log must beat while Redis is switching: one poll and a margin.
const THROUGH_THE_LOG: Duration = Duration::from_millis(3_500);
/// How long the sentinels have to promote the replica.
const FAILOVER: Duration = Duration::from_secs(30);

/// Where scripts/sentinel.sh started things.
struct SentinelEnv {
    url: String,
    sentinel: String,
    primary_port: u16,
    primary_pid: u32,
    replica_port: u16,
}

fn sentinel_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run this test through scripts/sentinel.sh, which starts the Redis primary, replica and sentinels")
    })
}

impl SentinelEnv {
    fn from_env() -> Self {
        let url = sentinel_env("RECALL_TEST_SENTINEL_URL");
        let number = |name: &str| -> u32 {
            let text = sentinel_env(name);
            text.parse()
                .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        };
        // The first sentinel of the URL, to ask where the master is.
        let first = url
            .trim_start_matches("redis+sentinel://")
            .split([',', '/'])
            .next()
            .unwrap_or_default()
            .to_owned();
        SentinelEnv {
            url,
            sentinel: format!("redis://{first}"),
            primary_port: number("RECALL_TEST_SENTINEL_PRIMARY_PORT") as u16,
            primary_pid: number("RECALL_TEST_SENTINEL_PRIMARY_PID"),
            replica_port: number("RECALL_TEST_SENTINEL_REPLICA_PORT") as u16,
        }
    }

    /// The master's port as the first sentinel names it now.
    async fn master_port(&self) -> Option<u16> {
        let client = redis::Client::open(self.sentinel.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let addr: Vec<String> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("recall-test")
            .query_async(&mut conn)
            .await
            .ok()?;
        addr.get(1)?.parse().ok()
    }

    /// SIGKILLs the primary (after checking the pid is a redis-server) and
    /// waits until it is gone.
    async fn kill_primary(&self) {
        let proc = format!("/proc/{}", self.primary_pid);
        let comm = std::fs::read_to_string(format!("{proc}/comm")).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            "redis-server",
            "pid {} is not the Redis primary",
            self.primary_pid
        );
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.primary_pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {} failed", self.primary_pid);
        let gone = eventually(Duration::from_secs(5), || async {
            // Gone, or a zombie the script has not reaped yet.
            std::fs::read_to_string(format!("{proc}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        })
        .await;
        assert!(gone.is_some(), "the Redis primary outlived SIGKILL by 5 s");
    }
}

/// `recall_notices_received_total` of each app.
async fn notices(apps: &[&TestApp]) -> Vec<f64> {
    let mut out = Vec::new();
    for app in apps {
        out.push(app.metric("recall_notices_received_total").await);
    }
    out
}

/// Logs `access` out through `via`; every app of `others` must reject it
/// within `limit` (by a notice: each also counts one more received).
async fn revoke_by_notice(via: &TestApp, others: &[&TestApp], access: &str, what: &str) {
    let before = notices(others).await;
    assert_eq!(via.logout(access).await.status, 204, "{what}: logout");
    let took = all_reject(others, access, NOTICE).await;
    assert!(
        took.is_some(),
        "{what}: the revocation did not reach the others in {NOTICE:?} (the log poll is {POLL:?}, so notices are not flowing)"
    );
    let after = notices(others).await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a > b,
            "{what}: instance {i} received no notice ({b} -> {a})"
        );
    }
    println!("{what}: the others rejected in {took:?}, by notice");
}

/// Whether every app's `/readyz` says the bus is `connected`.
async fn all_bus(apps: &[TestApp], connected: bool) -> bool {
    for app in apps {
        if app.get("/readyz", None).await.body["bus"]["connected"] != connected {
            return false;
        }
    }
    true
}

/// A fleet of three on `redis+sentinel://`: notices, then the primary
/// killed (revocations hold through the log, publishing fails and is
/// counted), then the replica promoted and notices, publishing and DPoP
/// replay checks all through the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Redis primary, replica and sentinels that scripts/sentinel.sh starts"]
async fn a_fleet_follows_a_redis_failover() {
    let env = SentinelEnv::from_env();
    assert_eq!(
        env.master_port().await,
        Some(env.primary_port),
        "the sentinels should name the primary the script started"
    );
    let b = Backend::new(Kind::Postgres).await;
    let apps = b
        .spawn_subscribed_fleet(3, |s| {
            s.redis_url = Some(env.url.clone());
            s.poll_interval_ms = POLL.as_millis() as u64;
            s.max_staleness_ms = 10_000;
        })
        .await;
    let (a, bb, c) = (&apps[0], &apps[1], &apps[2]);
    let (_, s) = a.signup_with_sessions("sentinel", 6).await;
    for app in &apps {
        assert_eq!(app.me_status(&s[0].access).await, 200);
    }
    // A bus of the test's own, its DPoP replay connection on the primary.
    let probe = RedisBus::new(
        &env.url,
        &b.channel,
        NoticeAuth::new(&b.master, &b.channel),
        None,
    )
    .expect("a sentinel URL");
    let key = Uuid::new_v4().to_string();
    assert_eq!(probe.first_use(&key, 60_000).await.unwrap(), Some(true));
    assert_eq!(probe.first_use(&key, 60_000).await.unwrap(), Some(false));

    // Before: notices through the primary.
    revoke_by_notice(a, &[bb, c], &s[0].access, "before the failover").await;

    env.kill_primary().await;
    let killed = std::time::Instant::now();
    let dropped = eventually(Duration::from_secs(5), || all_bus(&apps, false)).await;
    assert!(
        dropped.is_some(),
        "the subscriptions should drop with the primary"
    );

    // During the switch: no notice can go out, the log carries revocations.
    let failures = a.metric("recall_publish_failures_total").await;
    assert_eq!(a.logout(&s[1].access).await.status, 204);
    a.assert_me(&s[1].access, 401, "G2: the serving instance first")
        .await;
    let took = all_reject(&[bb, c], &s[1].access, THROUGH_THE_LOG).await;
    assert!(
        took.is_some(),
        "during the failover a revocation through A did not reach B and C through the log in {THROUGH_THE_LOG:?}"
    );
    println!("during the failover: B and C rejected in {took:?}, through the log");
    assert_eq!(bb.logout(&s[2].access).await.status, 204);
    let took = all_reject(&[a, c], &s[2].access, THROUGH_THE_LOG).await;
    assert!(
        took.is_some(),
        "during the failover a revocation through B did not reach A and C through the log in {THROUGH_THE_LOG:?}"
    );
    assert!(
        a.metric("recall_publish_failures_total").await > failures,
        "A's notice could not have gone out with the primary dead, yet no publish failure was counted"
    );
    for (i, app) in apps.iter().enumerate() {
        let ready = app.get("/readyz", None).await;
        assert_eq!(
            ready.status, 200,
            "instance {i}: Redis switching must not make it unready (the log is the truth): {}",
            ready.body
        );
    }

    // The sentinels promote the replica; every subscription comes back.
    let promoted = eventually(FAILOVER, || async {
        env.master_port().await == Some(env.replica_port)
    })
    .await;
    assert!(
        promoted.is_some(),
        "the sentinels did not promote the replica (127.0.0.1:{}) within {FAILOVER:?}",
        env.replica_port
    );
    println!(
        "the sentinels named the replica {:?} after the kill",
        killed.elapsed()
    );
    wait_subscribed(&apps).await;
    println!(
        "every instance subscribed again {:?} after the kill",
        killed.elapsed()
    );

    // After: notices through the new master, from any instance.
    revoke_by_notice(a, &[bb, c], &s[3].access, "after the failover, through A").await;
    revoke_by_notice(c, &[a, bb], &s[4].access, "after the failover, through C").await;
    revoke_by_notice(bb, &[a, c], &s[5].access, "after the failover, through B").await;
    for app in &apps {
        for session in &s {
            app.assert_me(&session.access, 401, "every revocation holds")
                .await;
        }
    }

    // DPoP replay checks reach the new master too (the instances'
    // publishers just did): the old connection fails once, the next call
    // asks the sentinels again.
    let fresh = Uuid::new_v4().to_string();
    let replay_back = eventually(Duration::from_secs(10), || async {
        matches!(probe.first_use(&fresh, 60_000).await, Ok(Some(true)))
    })
    .await;
    assert!(
        replay_back.is_some(),
        "DPoP replay checks did not reach the new master"
    );
    assert_eq!(probe.first_use(&fresh, 60_000).await.unwrap(), Some(false));
    assert_eq!(
        probe.first_use(&key, 60_000).await.unwrap(),
        Some(false),
        "a key recorded before the failover survives on the promoted replica"
    );
    stop_all(apps).await;
}

/// Malformed sentinel URLs stop the start with an error that names
/// RECALL_REDIS_URL and says what is wrong; nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_sentinel_url_is_a_startup_error() {
    let b = Backend::new(Kind::Sqlite).await;
    for (url, says) in [
        ("redis+sentinel:///mymaster", "no sentinel hosts"),
        ("redis+sentinel://127.0.0.1:26379", "no service name"),
        ("redis+sentinel://127.0.0.1:port/mymaster", "bad port"),
        ("rediss+sentinel://127.0.0.1/mymaster", "not supported"),
    ] {
        let mut settings = b.settings();
        settings.redis_url = Some(url.to_owned());
        let err = match recall::startup::start(settings).await {
            Ok(_) => panic!("{url}: started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("RECALL_REDIS_URL") && err.contains(says),
            "{url}: {err}"
        );
    }
}

/// Sentinels that do not answer: the instance still serves and revokes
/// (the log is the truth), counts each notice it could not publish, stays
/// ready with its bus down, and DPoP replay checks fail with an error (the
/// caller fails closed); nothing panics or hangs past the discovery bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sentinels_are_errors_not_panics() {
    // Port 1 on loopback: refused at once.
    let url = "redis+sentinel://127.0.0.1:1,127.0.0.1:1/mymaster";
    let b = Backend::new(Kind::Sqlite).await;
    let app = b.spawn_with(b.settings(), Some(url.to_owned())).await;
    let (_, s) = app.signup("nosentinel").await;
    assert_eq!(app.logout(&s.access).await.status, 204);
    app.assert_me(&s.access, 401, "G2 without a bus").await;
    let counted = eventually(Duration::from_secs(8), || async {
        app.metric("recall_publish_failures_total").await >= 1.0
    })
    .await;
    assert!(counted.is_some(), "the failed publish was not counted");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["bus"]["connected"], false, "{}", ready.body);
    app.stop().await;

    let bus = RedisBus::new(
        url,
        &b.channel,
        NoticeAuth::new(&b.master, &b.channel),
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = bus.first_use("k", 1_000).await.expect_err("no master");
    assert!(err.to_string().contains("mymaster"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
