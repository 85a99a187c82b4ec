//! Configuration: the raw flags (each bound to its `RECALL_*` env var) and
//! the validated runtime `Settings` built from them.
//!
//! May import: store, bus, tokens, keys, domain, clock. The layers:
//! docs/DESIGN.md, "Parts".

use std::path::PathBuf;

use clap::Args;

use crate::domain::LockoutPolicy;
use crate::keys::{KeyError, MasterKey};

/// Declares `Config` with `#[arg(long, global = true)]` on every field:
/// each is a `--flag`, taken by `recall`'s subcommands too.
macro_rules! global_flags {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
    }) => {
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[arg(long, global = true)]
                pub $field: $ty,
            )*
        }
    };
}

global_flags! {
    /// Raw flags and env vars, as API.md's configuration table lists them.
    #[derive(Debug, Clone, Args)]
    pub struct Config {
        /// Listen address (default 127.0.0.1:8080; `recall verifier`: 127.0.0.1:9090).
        #[arg(env = "RECALL_BIND")]
        pub bind: Option<String>,
        /// `postgres://...` for a fleet (several hosts with `target_session_attrs=read-write`
        /// follow a failover); unset: SQLite in the data dir.
        #[arg(env = "RECALL_DATABASE_URL", hide_env_values = true)]
        pub database_url: Option<String>,
        /// A file holding RECALL_DATABASE_URL (a secret: it may carry a password).
        #[arg(env = "RECALL_DATABASE_URL_FILE")]
        pub database_url_file: Option<PathBuf>,
        /// Embedded store and generated dev secrets.
        #[arg(env = "RECALL_DATA_DIR", default_value = "./data")]
        pub data_dir: PathBuf,
        /// Extra CA (PEM) trusted for PostgreSQL TLS, besides the system roots.
        #[arg(env = "RECALL_DATABASE_CA_FILE")]
        pub database_ca_file: Option<PathBuf>,
        /// `redis://...` for a fleet (`rediss://` for TLS; `redis+sentinel://h1:26379,h2:26379/SERVICE`
        /// follows a Sentinel failover); unset: in-process bus.
        #[arg(env = "RECALL_REDIS_URL", hide_env_values = true)]
        pub redis_url: Option<String>,
        /// CA (PEM) a `rediss://` server's certificate must chain to, instead of the system roots.
        #[arg(env = "RECALL_REDIS_CA_FILE")]
        pub redis_ca_file: Option<PathBuf>,
        /// Pub/sub channel (isolates tenants and tests).
        #[arg(env = "RECALL_REDIS_CHANNEL", default_value = "recall:notices")]
        pub redis_channel: String,
        /// Bootstrap admin bearer.
        #[arg(env = "RECALL_ADMIN_TOKEN", hide_env_values = true)]
        pub admin_token: Option<String>,
        /// A file holding RECALL_ADMIN_TOKEN.
        #[arg(env = "RECALL_ADMIN_TOKEN_FILE")]
        pub admin_token_file: Option<PathBuf>,
        /// 32 bytes, base64: encrypts private signing keys.
        #[arg(env = "RECALL_MASTER_KEY", hide_env_values = true)]
        pub master_key: Option<String>,
        /// A file holding RECALL_MASTER_KEY.
        #[arg(env = "RECALL_MASTER_KEY_FILE")]
        pub master_key_file: Option<PathBuf>,
        /// The address clients use (metadata, the default issuer); default
        /// `http://RECALL_BIND`.
        #[arg(env = "RECALL_PUBLIC_URL")]
        pub public_url: Option<String>,
        /// `iss` of access tokens; default RECALL_PUBLIC_URL.
        #[arg(env = "RECALL_ISSUER")]
        pub issuer: Option<String>,
        /// `aud` of access tokens.
        #[arg(env = "RECALL_AUDIENCE", default_value = "recall-api")]
        pub audience: String,
        /// Access-token lifetime, seconds.
        #[arg(env = "RECALL_ACCESS_TTL_SECS", default_value_t = 300)]
        pub access_ttl_secs: i64,
        /// Refresh-token lifetime, seconds.
        #[arg(env = "RECALL_REFRESH_TTL_SECS", default_value_t = 1_209_600)]
        pub refresh_ttl_secs: i64,
        /// Grace for honest concurrent refreshes, seconds.
        #[arg(env = "RECALL_REFRESH_GRACE_SECS", default_value_t = 10)]
        pub refresh_grace_secs: i64,
        /// Log polling backstop (G4), milliseconds.
        #[arg(env = "RECALL_POLL_INTERVAL_MS", default_value_t = 1000)]
        pub poll_interval_ms: u64,
        /// Fail-closed bound (G5), milliseconds.
        #[arg(env = "RECALL_MAX_STALENESS_MS", default_value_t = 5000)]
        pub max_staleness_ms: i64,
        /// Public `POST /v1/users`.
        #[arg(env = "RECALL_OPEN_REGISTRATION", default_value_t = true, action = clap::ArgAction::Set)]
        pub open_registration: bool,
        /// Absolute session lifetime, seconds: refresh never extends a session past it.
        #[arg(env = "RECALL_SESSION_MAX_SECS", default_value_t = 2_592_000)]
        pub session_max_secs: i64,
        /// CIDRs whose `X-Forwarded-For` is believed (rightmost untrusted address wins).
        #[arg(env = "RECALL_TRUSTED_PROXIES", default_value = "127.0.0.0/8,::1")]
        pub trusted_proxies: String,
        /// Requests per minute per client address to login, registration, refresh and `/oauth/*`.
        #[arg(env = "RECALL_RATE_LIMIT_PER_MIN", default_value_t = 60)]
        pub rate_limit_per_min: u32,
        /// Origins (comma-separated, like `https://app.example.com`) whose pages
        /// may call the JSON API from a browser (CORS). None by default.
        #[arg(env = "RECALL_CORS_ORIGINS", default_value = "")]
        pub cors_origins: String,
        /// DPoP server nonces (RFC 9449 section 8): proofs must carry a nonce
        /// an instance of the fleet issued within the last minute or two.
        #[arg(env = "RECALL_DPOP_NONCE", default_value_t = false, action = clap::ArgAction::Set)]
        pub dpop_nonce: bool,
        /// Delete events older than this many days (never those inside the
        /// revocation window); unset keeps everything.
        #[arg(env = "RECALL_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        pub retention_days: Option<u32>,
    }
}

/// Most grace a concurrent refresh may get: longer would let a stolen
/// refresh token be replayed without detection for that long.
pub const MAX_REFRESH_GRACE_SECS: i64 = 60;
/// Where `recall serve` listens unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The issuer of every token before RECALL_PUBLIC_URL became the default.
pub const LEGACY_ISSUER: &str = "recall";

/// Shortest accepted `RECALL_ADMIN_TOKEN` (256 bits of hex or base64 text).
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// A secret from its variable or from the file its `_FILE` variable names
/// (one trailing newline dropped), never both.
fn secret(
    value: Option<String>,
    file: Option<&std::path::Path>,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{name} and {name}_FILE are both set; use one"
        ))),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::Invalid(format!("{name}_FILE {}: {e}", path.display()))
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            Ok(Some(text.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// Parses `RECALL_CORS_ORIGINS`: comma-separated origins, each
/// `http(s)://host[:port]` with nothing after it.
pub fn parse_cors_origins(text: &str) -> Result<Vec<String>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let rest = t
                .strip_prefix("https://")
                .or_else(|| t.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '*']) => {
                    Ok(t.to_owned())
                }
                _ => Err(ConfigError::Invalid(format!(
                    "RECALL_CORS_ORIGINS: {t:?} is not an origin like https://app.example.com \
                     (scheme, host and port only; no wildcard)"
                ))),
            }
        })
        .collect()
}

/// Parses `RECALL_TRUSTED_PROXIES`: comma-separated CIDRs or bare addresses.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    // The sidecar's rule too: one parser for both.
    recall_verifier::request::parse_trusted_proxies(text)
        .map_err(|e| ConfigError::Invalid(format!("RECALL_TRUSTED_PROXIES: {e}")))
}

/// Configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("RECALL_MASTER_KEY is required with PostgreSQL (32 random bytes, base64)")]
    MasterKeyRequired,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Invalid(String),
}

/// Where `Settings::issuer` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerSource {
    /// Neither RECALL_ISSUER nor RECALL_PUBLIC_URL: `http://RECALL_BIND`.
    Default,
    /// RECALL_PUBLIC_URL (the issuer defaults to it).
    PublicUrl,
    /// RECALL_ISSUER.
    Issuer,
}

impl IssuerSource {
    /// The variable that set the issuer; `None` for the default.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            IssuerSource::Issuer => Some("RECALL_ISSUER"),
            IssuerSource::PublicUrl => Some("RECALL_PUBLIC_URL"),
            IssuerSource::Default => None,
        }
    }
}

/// Validated runtime settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    pub database_url: Option<String>,
    pub database_ca_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub redis_url: Option<String>,
    pub redis_ca_file: Option<PathBuf>,
    pub redis_channel: String,
    pub admin_token: Option<String>,
    pub master_key: MasterKey,
    /// The address clients use, without a trailing slash.
    pub public_url: String,
    pub issuer: String,
    /// Where `issuer` came from: only a default one adopts the fleet's (G13).
    pub issuer_source: IssuerSource,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub refresh_grace_secs: i64,
    pub poll_interval_ms: u64,
    pub max_staleness_ms: i64,
    pub open_registration: bool,
    pub session_max_secs: i64,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed to call the JSON API from a browser (CORS).
    pub cors_origins: Vec<String>,
    pub rate_limit_per_min: u32,
    /// DPoP server nonces required (RECALL_DPOP_NONCE).
    pub dpop_nonce: bool,
    /// RECALL_RETENTION_DAYS: how long the log keeps events (None: forever).
    pub retention_days: Option<u32>,
    /// Notices waiting to be published; past it the oldest is dropped (G4
    /// covers the loss: the log has it).
    pub publish_queue: usize,
    pub lockout: LockoutPolicy,
    /// Concurrent argon2 jobs (default: cores) and how many more may queue.
    pub hash_workers: usize,
    pub hash_queue: usize,
}

impl Config {
    /// Validates and resolves secrets (the SQLite default generates a
    /// master key into the data dir on first start).
    pub fn into_settings(self) -> Result<Settings, ConfigError> {
        let positive = [
            ("RECALL_ACCESS_TTL_SECS", self.access_ttl_secs),
            ("RECALL_REFRESH_TTL_SECS", self.refresh_ttl_secs),
            ("RECALL_MAX_STALENESS_MS", self.max_staleness_ms),
            ("RECALL_POLL_INTERVAL_MS", self.poll_interval_ms as i64),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return Err(ConfigError::Invalid(format!("{name} must be positive")));
            }
        }
        if !(0..=MAX_REFRESH_GRACE_SECS).contains(&self.refresh_grace_secs) {
            return Err(ConfigError::Invalid(format!(
                "RECALL_REFRESH_GRACE_SECS must be 0 to {MAX_REFRESH_GRACE_SECS}"
            )));
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            return Err(ConfigError::Invalid(
                "RECALL_REFRESH_TTL_SECS must be at least RECALL_ACCESS_TTL_SECS".into(),
            ));
        }
        if self.session_max_secs < self.access_ttl_secs {
            return Err(ConfigError::Invalid(
                "RECALL_SESSION_MAX_SECS must be at least RECALL_ACCESS_TTL_SECS".into(),
            ));
        }
        if self.rate_limit_per_min == 0 {
            return Err(ConfigError::Invalid(
                "RECALL_RATE_LIMIT_PER_MIN must be positive".into(),
            ));
        }
        let trusted_proxies = parse_trusted_proxies(&self.trusted_proxies)?;
        let cors_origins = parse_cors_origins(&self.cors_origins)?;
        let database_url = secret(
            self.database_url,
            self.database_url_file.as_deref(),
            "RECALL_DATABASE_URL",
        )?
        .filter(|s| !s.is_empty());
        let admin_token = secret(
            self.admin_token,
            self.admin_token_file.as_deref(),
            "RECALL_ADMIN_TOKEN",
        )?
        .filter(|s| !s.is_empty());
        if admin_token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_ADMIN_TOKEN_BYTES)
        {
            return Err(ConfigError::Invalid(format!(
                "RECALL_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_BYTES} bytes \
                 (e.g. head -c32 /dev/urandom | base64)"
            )));
        }
        let master_key = secret(
            self.master_key,
            self.master_key_file.as_deref(),
            "RECALL_MASTER_KEY",
        )?;
        let master_key = match (&master_key, &database_url) {
            (Some(b64), _) => MasterKey::parse(b64)?,
            (None, Some(_)) => return Err(ConfigError::MasterKeyRequired),
            (None, None) => MasterKey::load_or_create(&self.data_dir)?,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let bind = self.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let public_url = self.public_url.filter(|u| !u.trim().is_empty());
        let issuer = self.issuer.filter(|i| !i.is_empty());
        // A fleet adopts its recorded issuer for an instance told neither (G13).
        let issuer_source = match (&issuer, &public_url) {
            (Some(_), _) => IssuerSource::Issuer,
            (None, Some(_)) => IssuerSource::PublicUrl,
            (None, None) => IssuerSource::Default,
        };
        let public_url = public_url
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(
                "RECALL_PUBLIC_URL must start with http:// or https://".into(),
            ));
        }
        let issuer = issuer.unwrap_or_else(|| public_url.clone());
        Ok(Settings {
            bind,
            database_url,
            database_ca_file: self.database_ca_file,
            data_dir: self.data_dir,
            redis_url: self.redis_url.filter(|s| !s.is_empty()),
            redis_ca_file: self.redis_ca_file,
            redis_channel: self.redis_channel,
            admin_token,
            master_key,
            public_url,
            issuer,
            issuer_source,
            audience: self.audience,
            access_ttl_secs: self.access_ttl_secs,
            refresh_ttl_secs: self.refresh_ttl_secs,
            refresh_grace_secs: self.refresh_grace_secs,
            poll_interval_ms: self.poll_interval_ms,
            max_staleness_ms: self.max_staleness_ms,
            open_registration: self.open_registration,
            session_max_secs: self.session_max_secs,
            trusted_proxies,
            cors_origins,
            rate_limit_per_min: self.rate_limit_per_min,
            dpop_nonce: self.dpop_nonce,
            retention_days: self.retention_days,
            publish_queue: 4096,
            lockout: LockoutPolicy::default(),
            hash_workers: cores,
            hash_queue: 16 * cores,
        })
    }
}

/// Parses `recall`'s configuration flags into `Config`.
#[derive(clap::Parser)]
#[command(name = "recall")]
struct Flags {
    #[command(flatten)]
    config: Config,
}

/// A configuration that cannot be parsed or cannot work.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    #[error(transparent)]
    Parse(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Settings {
    /// Settings exactly as `recall` builds them from these flags (and its
    /// `RECALL_*` environment): the product's defaults and checks apply.
    /// Tools, benchmarks and tests build their settings here.
    pub fn from_flags<I, T>(flags: I) -> Result<Settings, FlagsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = std::iter::once(std::ffi::OsString::from("recall"))
            .chain(flags.into_iter().map(Into::into));
        let flags = <Flags as clap::Parser>::try_parse_from(args)?;
        Ok(flags.config.into_settings()?)
    }

    /// Issuers whose tokens verify besides `issuer`: `recall`, the default
    /// before RECALL_PUBLIC_URL, so tokens issued under it keep working
    /// until they expire. Safe: only this deployment's keys sign either.
    pub fn accepted_issuers(&self) -> Vec<&str> {
        [LEGACY_ISSUER]
            .into_iter()
            .filter(|i| *i != self.issuer)
            .collect()
    }

    /// How long the log keeps events (RECALL_RETENTION_DAYS; None: forever).
    pub fn log_retention(&self) -> Option<std::time::Duration> {
        self.retention_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400))
    }

    /// How long a revocation must be remembered: the longest access-token
    /// lifetime plus clock leeway (G8).
    pub fn key_retention(&self) -> std::time::Duration {
        let secs = self.access_ttl_secs + crate::tokens::LEEWAY_SECS as i64 + 5;
        std::time::Duration::from_secs(secs.max(0).unsigned_abs())
    }

    /// `key_retention` in milliseconds, as the revocation state counts.
    pub fn retention_ms(&self) -> i64 {
        crate::clock::span_ms(self.key_retention())
    }

    /// The event store these settings name (PostgreSQL with its TLS
    /// options, or SQLite in the data dir); connections open lazily.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        crate::store::Store::open_tls(
            self.database_url.as_deref(),
            &self.sqlite_path(),
            self.database_ca_file.as_deref(),
            &self.master_key,
        )
    }

    /// The authenticator of this deployment's notices on its channel (G9).
    pub fn notice_auth(&self) -> crate::bus::notice::NoticeAuth {
        crate::bus::notice::NoticeAuth::new(&self.master_key, &self.redis_channel)
    }

    /// Path of the embedded database.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("recall.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, FlagsError> {
        let dir = std::env::temp_dir().join(format!("recall-cfg-{}", uuid::Uuid::new_v4()));
        let dir_arg = dir.to_string_lossy().into_owned();
        let mut all = vec!["--data-dir", &dir_arg];
        all.extend_from_slice(args);
        let result = Settings::from_flags(all);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn error(args: &[&str]) -> String {
        settings(args).unwrap_err().to_string()
    }

    #[test]
    fn every_config_error_names_its_variable() {
        let cases: [(&[&str], &str); 8] = [
            (&["--refresh-grace-secs", "61"], "RECALL_REFRESH_GRACE_SECS"),
            (&["--refresh-grace-secs=-1"], "RECALL_REFRESH_GRACE_SECS"),
            (
                &["--access-ttl-secs", "600", "--refresh-ttl-secs", "300"],
                "RECALL_REFRESH_TTL_SECS",
            ),
            (&["--admin-token", "short"], "RECALL_ADMIN_TOKEN"),
            (
                &["--trusted-proxies", "10.0.0.0/8,nonsense"],
                "RECALL_TRUSTED_PROXIES",
            ),
            (&["--rate-limit-per-min", "0"], "RECALL_RATE_LIMIT_PER_MIN"),
            (&["--session-max-secs", "10"], "RECALL_SESSION_MAX_SECS"),
            (&["--master-key", "c2hvcnQ="], "RECALL_MASTER_KEY"),
        ];
        for (args, var) in cases {
            let text = error(args);
            assert!(text.contains(var), "{args:?}: {text}");
        }
        assert!(settings(&["--refresh-grace-secs", "60"]).is_ok());
        let s = settings(&["--trusted-proxies", "10.0.0.0/8, 192.0.2.1"]).unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        assert!(s.cors_origins.is_empty(), "nothing is open by default");
        let s = settings(&["--cors-origins", "https://a.example, http://localhost:3000"]).unwrap();
        assert_eq!(
            s.cors_origins,
            ["https://a.example", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "a.example",
            "https://a.example/app",
            "https://*.example",
            "https://",
        ] {
            let text = error(&["--cors-origins", bad]);
            assert!(text.contains("RECALL_CORS_ORIGINS"), "{bad}: {text}");
        }
        let s = settings(&["--trusted-proxies", "10.0.0.0/8, 192.0.2.1"]).unwrap();
        assert_eq!(s.session_max_secs, 2_592_000);
        assert_eq!(s.rate_limit_per_min, 60);
    }

    #[test]
    fn secrets_come_from_files_but_never_from_both() {
        let dir = std::env::temp_dir().join(format!("recall-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let master = MasterKey::generate().to_base64();
        let token = "t".repeat(40);
        let url = "postgres://recall:s3cret@db.internal/recall";
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("{text}\n")).unwrap();
            p.to_string_lossy().into_owned()
        };
        let (mk, at, du) = (
            write("master", &master),
            write("admin", &token),
            write("db", url),
        );
        let s = settings(&[
            "--master-key-file",
            &mk,
            "--admin-token-file",
            &at,
            "--database-url-file",
            &du,
        ])
        .unwrap();
        assert_eq!(s.master_key.to_base64(), master);
        assert_eq!(s.admin_token.as_deref(), Some(token.as_str()));
        assert_eq!(s.database_url.as_deref(), Some(url));
        let both = error(&["--admin-token", &token, "--admin-token-file", &at]);
        assert!(both.contains("RECALL_ADMIN_TOKEN_FILE"), "{both}");
        let missing = error(&["--master-key-file", "/nonexistent/master"]);
        assert!(missing.contains("RECALL_MASTER_KEY_FILE"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
