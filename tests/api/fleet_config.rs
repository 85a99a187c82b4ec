//! G13 One fleet, one configuration, on PostgreSQL: an instance without
//! RECALL_PUBLIC_URL adopts the fleet's recorded issuer, the real `recall
//! serve` refuses to start with another issuer, audience or master key and
//! says which, and `recall admin set-issuer` moves the fleet to a new
//! issuer without killing the old one's tokens.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use recall::bus::LocalBus;
use recall::keys::MasterKey;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::fixtures::stop_all;
use crate::helpers::{
    events, eventually, iss_of, redis_url, username, Backend, Kind, TestApp, FLEET,
};
use crate::verifiers::port_from;

/// The fleet's address in these tests.
const PUBLIC: &str = "https://auth.fleet.test";
/// An environment variable of a `recall` process: name, value.
type Var<'a> = (&'a str, &'a str);

/// Longest a `recall` process may take to refuse or to answer.
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

/// `recall <args>` on this backend's database and key, nothing else set
/// but `env`.
fn recall(b: &Backend, args: &[&str], env: &[Var<'_>]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recall"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RECALL_BIND", "127.0.0.1:0")
        .env("RECALL_DATA_DIR", &b.dir.0)
        .env("RECALL_DATABASE_URL", &b.db.as_ref().unwrap().url)
        .env("RECALL_MASTER_KEY", b.master.to_base64())
        .env("RECALL_REDIS_URL", redis_url())
        .env("RECALL_REDIS_CHANNEL", &b.channel)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `recall <args>` to its end: (success, stdout, stderr).
async fn run(b: &Backend, args: &[&str], env: &[Var<'_>]) -> (bool, String, String) {
    let child = recall(b, args, env).spawn().expect("spawn recall");
    let out = tokio::time::timeout(PROCESS_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("recall {args:?} {env:?} took over {PROCESS_LIMIT:?}"))
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An in-process instance on the backend's Redis channel.
async fn instance(b: &Backend, flags: &[&str]) -> TestApp {
    b.spawn_with(b.settings_with(flags), Some(redis_url()))
        .await
}

/// Why an in-process start with these flags was refused.
async fn refusal(b: &Backend, flags: &[&str]) -> String {
    let settings = b.settings_with(flags);
    let store = settings.open_store().unwrap();
    store.migrate().await.unwrap();
    match recall::startup::start_with(settings, store, Arc::new(LocalBus::default())).await {
        Ok(_) => panic!("an instance with {flags:?} started"),
        Err(e) => format!("{e:#}"),
    }
}

/// The discovery document's accepted issuers.
async fn accepted_issuers(app: &TestApp) -> Vec<String> {
    let res = app
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(res.status, 200);
    serde_json::from_value(res.body["recall_accepted_issuers"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_public_url_adopts_the_fleets_issuer_and_tokens_verify_everywhere() {
    let b = Backend::new(Kind::Postgres).await;
    let apps = vec![
        instance(&b, &["--public-url", PUBLIC]).await,
        instance(&b, &["--public-url", PUBLIC]).await,
        // No RECALL_PUBLIC_URL: its own default would be http://127.0.0.1:0.
        instance(&b, &[]).await,
    ];
    assert_eq!(apps[2].recall().settings().issuer, PUBLIC);
    let name = username("fleetcfg");
    apps[0].register(&name).await;
    for (i, app) in apps.iter().enumerate() {
        let s = app.login(&name).await;
        assert_eq!(iss_of(&s.access), PUBLIC, "instance {i}");
        for (j, other) in apps.iter().enumerate().filter(|(j, _)| *j != i) {
            other
                .assert_me(
                    &s.access,
                    200,
                    &format!("a token of instance {i} on instance {j}"),
                )
                .await;
        }
    }
    let res = apps[2]
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    assert_eq!(res.body["issuer"], PUBLIC);
    stop_all(apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_another_issuer_audience_or_master_key_refuses_to_start_naming_both() {
    let b = Backend::new(Kind::Postgres).await;
    let first = instance(&b, &["--public-url", PUBLIC]).await;
    let keys_before = first.recall().store().keys().await.unwrap().len();
    let other_key = MasterKey::generate();
    let (other_b64, other_print) = (other_key.to_base64(), other_key.fingerprint());
    let fleet_print = b.master.fingerprint();
    let issuer_refusal =
        format!("RECALL_ISSUER is \"https://other.test\" but this fleet's issuer is \"{PUBLIC}\"");
    let url_refusal = format!(
        "RECALL_PUBLIC_URL is \"https://other.test\" but this fleet's issuer is \"{PUBLIC}\""
    );
    let audience_refusal =
        "RECALL_AUDIENCE is \"other\" but this fleet's audience is \"recall-api\"";
    let cases: [(&[Var], Vec<&str>); 4] = [
        (
            &[
                ("RECALL_PUBLIC_URL", PUBLIC),
                ("RECALL_ISSUER", "https://other.test"),
            ],
            vec![issuer_refusal.as_str()],
        ),
        (
            &[("RECALL_PUBLIC_URL", "https://other.test")],
            vec![url_refusal.as_str()],
        ),
        (
            &[("RECALL_PUBLIC_URL", PUBLIC), ("RECALL_AUDIENCE", "other")],
            vec![audience_refusal],
        ),
        (
            &[
                ("RECALL_PUBLIC_URL", PUBLIC),
                ("RECALL_MASTER_KEY", other_b64.as_str()),
            ],
            vec![
                "RECALL_MASTER_KEY",
                other_print.as_str(),
                fleet_print.as_str(),
            ],
        ),
    ];
    for (env, expected) in cases {
        let (ok, stdout, stderr) = run(&b, &["serve"], env).await;
        assert!(!ok, "recall serve with {env:?} started: {stdout}");
        for text in expected {
            assert!(stderr.contains(text), "{env:?}: {text:?} not in {stderr}");
        }
        assert!(
            !stderr.contains(&other_b64) && !stderr.contains(&b.master.to_base64()),
            "a master key was printed: {stderr}"
        );
    }
    // Refused before generating anything.
    assert_eq!(
        first.recall().store().keys().await.unwrap().len(),
        keys_before
    );

    // The same configuration without RECALL_PUBLIC_URL starts, with the
    // fleet's issuer.
    let mut child = recall(&b, &["serve"], &[]).spawn().unwrap();
    let port = port_from(&mut child, "recall listening on port ").await;
    let meta: Value = reqwest::get(format!(
        "http://127.0.0.1:{port}/.well-known/oauth-authorization-server"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(meta["issuer"], PUBLIC);
    child.start_kill().unwrap();
    let _ = child.wait().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_issuer_moves_the_fleet_and_tokens_of_the_old_issuer_keep_verifying() {
    const NEW: &str = "https://id.fleet.test";
    let b = Backend::new(Kind::Postgres).await;
    let old = instance(&b, &["--public-url", PUBLIC]).await;
    let (name, before) = old.signup("setiss").await;
    assert_eq!(iss_of(&before.access), PUBLIC);

    // The CLI runs configured with the new issuer already.
    let new_env = [("RECALL_PUBLIC_URL", NEW)];
    let (ok, stdout, stderr) = run(&b, &["admin", "set-issuer", NEW], &new_env).await;
    assert!(ok, "set-issuer failed: {stderr}");
    let printed: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(printed["type"], "issuer_changed");
    assert_eq!(
        printed["data"],
        json!({ "issuer": NEW, "previous": PUBLIC })
    );

    // The instance still running accepts the new issuer's tokens.
    let learned = eventually(FLEET, || async {
        old.recall().accepted_issuers().iter().any(|i| i == NEW)
    })
    .await;
    assert!(
        learned.is_some(),
        "the running instance never heard of {NEW}"
    );

    // Restarted with the new issuer: not refused; the old token verifies,
    // new tokens carry the new issuer and verify on the old instance too.
    let new = instance(&b, &["--public-url", NEW]).await;
    assert_eq!(new.me_status(&before.access).await, 200);
    let after = new.login(&name).await;
    assert_eq!(iss_of(&after.access), NEW);
    assert_eq!(old.me_status(&after.access).await, 200);
    let accepted = accepted_issuers(&new).await;
    assert_eq!(accepted[0], NEW, "{accepted:?}");
    assert!(accepted.iter().any(|i| i == PUBLIC), "{accepted:?}");

    // An instance without RECALL_PUBLIC_URL adopts the new issuer; one
    // still configured with the old is refused.
    let adopted = instance(&b, &[]).await;
    assert_eq!(adopted.recall().settings().issuer, NEW);
    assert_eq!(adopted.me_status(&before.access).await, 200);
    let refused = refusal(&b, &["--public-url", PUBLIC]).await;
    assert!(
        refused.contains(&format!(
            "RECALL_PUBLIC_URL is \"{PUBLIC}\" but this fleet's issuer is \"{NEW}\""
        )),
        "{refused}"
    );

    // The change is in the audit log, by the CLI; asking again changes nothing.
    let changes = events(&new, "type=issuer_changed").await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["actor"], "cli");
    assert_eq!(
        changes[0]["data"],
        json!({ "issuer": NEW, "previous": PUBLIC })
    );
    let (ok, stdout, stderr) = run(&b, &["admin", "set-issuer", NEW], &new_env).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({ "issuer": NEW, "changed": false })
    );
    for app in [old, new, adopted] {
        app.stop().await;
    }
}
