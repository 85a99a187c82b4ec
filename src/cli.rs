//! The `recall` command line: `serve` (default), `migrate`, and `admin ...`,
//! which runs the emergency controls against the same store and bus, for
//! when the HTTP side is down.
//!
//! May import: any module (the top layer). The layers: docs/DESIGN.md, "Parts".

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, IssuerSource};
use crate::events::Meta;
use crate::http::admin::audit_event;
use crate::http::forensics::validity_answer;
use crate::server::Application;
use crate::service::forensics::{parse_instant, Subject};
use crate::service::{Reason, Recall};
use crate::store::EventFilter;

/// Recall: JWT auth with real logout.
#[derive(Debug, Parser)]
#[command(name = "recall", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// The settings of `recall serve` that the sidecar uses too; every other
/// one is hidden from `recall verifier --help` (the sidecar has no store,
/// no Redis and no master key).
const SIDECAR_SETTINGS: &[&str] = &["bind", "max_staleness_ms", "public_url", "trusted_proxies"];

impl Cli {
    /// The command line as clap describes it, with `recall verifier
    /// --help` showing only what the sidecar reads.
    pub fn command_for_help() -> clap::Command {
        use clap::CommandFactory;
        let cmd = Cli::command();
        // Hidden copies in the subcommand: clap then propagates nothing
        // over them, and they parse as before.
        let hidden: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .filter(|a| !SIDECAR_SETTINGS.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd.mut_subcommand("verifier", |sc| sc.args(hidden))
    }

    /// Parses the process's arguments (exits with help or an error).
    pub fn parse_args() -> Cli {
        use clap::FromArgMatches;
        let matches = Cli::command_for_help().get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (the default): migrate, rebuild state, join the fleet.
    Serve,
    /// Only run the store migrations.
    Migrate,
    /// Emergency controls from a shell.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Forward auth for your own APIs from Recall's JWKS and revocation
    /// feed: no database, no Redis, no master key.
    Verifier(crate::sidecar::VerifierArgs),
}

/// `recall admin ...`; USER is a user id or a username.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user; the password is read from stdin.
    CreateUser {
        name: String,
        #[arg(long)]
        admin: bool,
    },
    /// Lock a user (default 24h) and revoke every session.
    Lock {
        user: String,
        #[arg(long = "for", value_parser = humantime::parse_duration, default_value = "24h")]
        duration: Duration,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a lock.
    Unlock { user: String },
    /// Erase a user (id or username): end every session, destroy the
    /// personal data (crypto-shredding), free the username.
    EraseUser { user: String },
    /// Revoke every session of a user.
    RevokeSessions {
        user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Rotate the signing key; --compromised kills the old key's tokens now.
    RotateKey {
        #[arg(long)]
        compromised: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Create a service credential (verifiers, SSF receivers); prints its
    /// token once.
    CreateService { name: String },
    /// End a service credential everywhere.
    RevokeService { service_id: uuid::Uuid },
    /// Change the fleet's token issuer (PostgreSQL): tokens of the old one
    /// verify until they expire; restart every instance with
    /// RECALL_PUBLIC_URL or RECALL_ISSUER set to the new one (or unset).
    SetIssuer { issuer: String },
    /// Print every client type's policy (JSON).
    Policies,
    /// Set a client type's policy (web, mobile or service) from JSON, as
    /// `PUT /v1/admin/policies/{type}` takes it: an event, fleet-wide, for
    /// sessions that log in after it.
    SetPolicy {
        client_type: String,
        /// The policy, e.g. '{"access_ttl_secs":300,"refresh_ttl_secs":86400,
        /// "session_max_secs":2592000,"binding":"network","on_mismatch":"revoke"}'.
        policy: String,
    },
    /// Verify the log's hash chain (from the first event kept, or --from):
    /// prints `{ok, verified_through, first_bad_seq?}`; exits 1 if broken.
    VerifyLog {
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
    /// Print the latest signed checkpoint of the log (JSON); --export signs
    /// a fresh one first, for an outside party to pin the log with.
    Checkpoint {
        #[arg(long)]
        export: bool,
    },
    /// Would this access token (or any token of this session) have been
    /// accepted at time AT (RFC 3339)? Replays the log up to AT and prints
    /// what `POST /v1/admin/forensics/validity` answers.
    Replay {
        #[arg(long)]
        at: String,
        #[arg(long, required_unless_present = "session", conflicts_with = "session")]
        token: Option<String>,
        #[arg(long)]
        session: Option<uuid::Uuid>,
    },
    /// Print the audit log as JSON lines; --follow keeps printing new events.
    Events {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[arg(long)]
        follow: bool,
    },
}

/// Structured logs: human-readable by default, JSON with RECALL_LOG_FORMAT=json.
pub fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Some(Command::Admin(_)) => "warn",
        _ => "info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // One access-log line per request when its span closes: method,
        // route, status, request id and time taken.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("RECALL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    // The sidecar needs none of Recall's settings (no store, no master key).
    if let Command::Verifier(args) = command {
        let staleness = cli.config.max_staleness_ms;
        return crate::sidecar::run(args, cli.config.bind, staleness).await;
    }
    let mut settings = cli.config.into_settings()?;
    if let Command::Admin(AdminCommand::SetIssuer { .. }) = command {
        // This process is configured with the new issuer, which the fleet
        // does not have yet: it joins with the fleet's (it issues no token)
        // instead of being refused, and the audience and key still must match.
        settings.issuer_source = IssuerSource::Default;
    }
    match command {
        Command::Serve => {
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let bind = settings.bind.clone();
            let app = Application::build(settings, workers, true).await?;
            tracing::info!(%bind, port = app.port(), "recall serving");
            // On stdout too, for whoever started it on port 0.
            println!("recall listening on port {}", app.port());
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate => {
            let store = settings.open_store()?;
            store.migrate().await?;
            println!("migrated ({})", store.kind());
            Ok(())
        }
        Command::Verifier(_) => Ok(()),
        Command::Admin(cmd) => {
            let (recall, tasks) = crate::startup::start(settings).await?;
            let result = admin(&recall, cmd).await;
            // Tell the fleet before exiting; instances that miss it poll the log.
            recall.flush(Duration::from_secs(3)).await;
            for t in tasks {
                t.abort();
            }
            result
        }
    }
}

fn print(value: impl serde::Serialize) {
    let value = serde_json::to_string(&value).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn admin(recall: &Arc<Recall>, cmd: AdminCommand) -> anyhow::Result<()> {
    let meta = Meta {
        actor: Some("cli".into()),
        ip: None,
    };
    match cmd {
        AdminCommand::CreateUser { name, admin } => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let roles = if admin {
                vec!["admin".to_owned()]
            } else {
                vec![]
            };
            let (user_id, username) = recall
                .admin()
                .create_user(&name, password, admin, &meta)
                .await?;
            print(serde_json::json!({ "user_id": user_id, "username": username, "roles": roles }));
        }
        AdminCommand::CreateService { name } => {
            let (service, token) = recall.feed().create_service(&name, &meta).await?;
            print(serde_json::json!({
                "service_id": service.id,
                "name": service.name,
                "token": token,
            }));
        }
        AdminCommand::RevokeService { service_id } => {
            recall.feed().revoke_service(service_id, &meta).await?;
            print(serde_json::json!({ "service_id": service_id, "revoked": true }));
        }
        AdminCommand::Lock {
            user,
            duration,
            reason,
        } => {
            let u = recall.admin().find_user(&user).await?;
            let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
            let env = recall
                .admin()
                .lock_user(u.id, Some(secs), Reason::parse(reason)?, &meta)
                .await?;
            print(audit_event(&env));
        }
        AdminCommand::Unlock { user } => {
            let u = recall.admin().find_user(&user).await?;
            let env = recall.admin().unlock_user(u.id, &meta).await?;
            print(audit_event(&env));
        }
        AdminCommand::EraseUser { user } => {
            let u = recall.admin().find_user(&user).await?;
            let env = recall.admin().erase_user(u.id, &meta).await?;
            print(audit_event(&env));
        }
        AdminCommand::RevokeSessions { user, reason } => {
            let u = recall.admin().find_user(&user).await?;
            let (_, env) = recall
                .admin()
                .admin_revoke_sessions(u.id, Reason::parse(reason)?, &meta)
                .await?;
            print(audit_event(&env));
        }
        AdminCommand::RotateKey {
            compromised,
            reason,
        } => {
            let env = recall
                .admin()
                .rotate_key(compromised, Reason::parse(reason)?, &meta)
                .await?;
            print(audit_event(&env));
        }
        AdminCommand::SetIssuer { issuer } => {
            match recall.admin().set_issuer(&issuer, &meta).await? {
                Some(env) => print(audit_event(&env)),
                None => print(serde_json::json!({ "issuer": issuer, "changed": false })),
            }
        }
        AdminCommand::Policies => {
            let all: std::collections::BTreeMap<_, _> = recall
                .policies()
                .await?
                .into_iter()
                .map(|(t, v)| (t, v.policy))
                .collect();
            print(serde_json::json!({ "policies": all }));
        }
        AdminCommand::SetPolicy {
            client_type,
            policy,
        } => {
            let policy: crate::domain::Policy = serde_json::from_str(&policy)
                .map_err(|e| anyhow::anyhow!("the policy is not valid JSON for a policy: {e}"))?;
            let view = recall
                .admin()
                .set_policy(&client_type, policy, &meta)
                .await?;
            print(serde_json::json!({
                "client_type": client_type, "policy": view.policy, "seq": view.seq,
            }));
        }
        AdminCommand::VerifyLog { from } => {
            let verdict = recall.admin().verify_log(from).await?;
            print(verdict);
            if !verdict.ok {
                anyhow::bail!(
                    "the log's hash chain is broken at seq {}",
                    verdict.first_bad_seq.unwrap_or_default()
                );
            }
        }
        AdminCommand::Checkpoint { export } => {
            match recall.admin().checkpoint(export, &meta).await? {
                Some(cp) => print(cp),
                None => anyhow::bail!("no checkpoint: the log is empty"),
            }
        }
        AdminCommand::Replay { at, token, session } => {
            let subject = Subject::from_parts(token, session)?;
            let at = parse_instant(&at)?;
            let answer = recall.admin().validity(subject, at).await?;
            print(validity_answer(&answer));
        }
        AdminCommand::Events {
            after,
            limit,
            follow,
        } => {
            let mut last = after;
            loop {
                let filter = EventFilter {
                    after: last,
                    limit: limit.clamp(1, 1000),
                    ..EventFilter::default()
                };
                let page = recall.admin().list_events(&filter).await?;
                for env in &page {
                    print(audit_event(env));
                    last = env.seq;
                }
                if page.len() as i64 >= filter.limit {
                    continue;
                }
                if !follow {
                    break;
                }
                // New events wake us through the bus; the timeout is the backstop.
                let mut applied = recall.admin().live_events();
                let _ = tokio::time::timeout(Duration::from_millis(500), applied.recv()).await;
            }
        }
    }
    Ok(())
}
