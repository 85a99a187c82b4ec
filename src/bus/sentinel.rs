//! Redis behind Sentinel: `RECALL_REDIS_URL` in the form other ecosystems
//! use, `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/DB]`
//! (the port defaults to 26379; `?db=N` also sets the database;
//! `?sentinel_username=...&sentinel_password=...` authenticate to the
//! sentinels, the userinfo to the Redis servers). The bus asks the
//! sentinels for the current master on every (re)connect and never keeps
//! an address, so it follows a failover. `rediss+sentinel://` (TLS) is
//! refused: Sentinel names masters by address, and a TLS set-up that checks
//! those names is not built or tested yet.
//!
//! May import: what `bus` may (its top comment).

use std::fmt;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::ConnectionAddr;
use tokio::sync::Mutex;

use super::BusError;

/// The Sentinel port when a host gives none.
pub const DEFAULT_PORT: u16 = 26379;
/// How long one discovery (all sentinels, then the master's `ROLE`) may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `url` asks for Sentinel (any `...sentinel://` scheme, so a
/// misspelt one is refused by `SentinelUrl::parse` with a clear message
/// rather than by the plain URL parser).
pub fn is_sentinel_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.to_ascii_lowercase().ends_with("sentinel"))
}

/// A parsed `redis+sentinel://` URL. Its `Debug` hides the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels' `(host, port)`, in the URL's order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub service: String,
    /// The database on the master.
    pub db: i64,
    /// Credentials for the Redis servers (the master).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Credentials for the sentinels themselves.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
}

impl fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .finish()
    }
}

impl SentinelUrl {
    /// Parses a `redis+sentinel://` URL; the error says what is wrong
    /// without repeating a password.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("a Sentinel URL starts with redis+sentinel://")?;
        match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => {}
            "rediss+sentinel" => {
                return Err("rediss+sentinel:// (TLS through Sentinel) is not supported; \
                            use redis+sentinel:// on a trusted network, or rediss:// to one server"
                    .into())
            }
            other => {
                return Err(format!(
                    "unknown scheme {other}://; Sentinel URLs are redis+sentinel://host:port,host:port/SERVICE"
                ))
            }
        }
        if rest.contains('#') {
            return Err("a Sentinel URL has no #fragment; the service name is the path".into());
        }
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let mut parsed = SentinelUrl {
            sentinels: parse_hosts(hosts)?,
            service: String::new(),
            db: 0,
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            parsed.username = non_empty(decode(user, "user name")?);
            parsed.password = match password {
                Some(p) => non_empty(decode(p, "password")?),
                None => None,
            };
        }
        let mut segments = path.split('/');
        parsed.service = decode(segments.next().unwrap_or(""), "service name")?;
        if parsed.service.is_empty() {
            return Err(
                "no service name: add the name the sentinels monitor, as in \
                        redis+sentinel://host:26379/mymaster"
                    .into(),
            );
        }
        let path_db = match segments.next() {
            None | Some("") => None,
            Some(db) => Some(parse_db(db)?),
        };
        if segments.next().is_some() {
            return Err("too many path segments; the path is /SERVICE or /SERVICE/DB".into());
        }
        let mut query_db = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "db" => query_db = Some(parse_db(value)?),
                "sentinel_username" => {
                    parsed.sentinel_username = non_empty(decode(value, "sentinel_username")?)
                }
                "sentinel_password" => {
                    parsed.sentinel_password = non_empty(decode(value, "sentinel_password")?)
                }
                other => {
                    return Err(format!(
                    "unknown parameter {other:?}; known: db, sentinel_username, sentinel_password"
                ))
                }
            }
        }
        parsed.db = match (path_db, query_db) {
            (Some(_), Some(_)) => {
                return Err("the database is given twice (path and ?db=); give it once".into())
            }
            (Some(db), None) | (None, Some(db)) => db,
            (None, None) => 0,
        };
        Ok(parsed)
    }

    /// Whether every sentinel is on this machine (plaintext is then fine).
    pub fn all_loopback(&self) -> bool {
        self.sentinels.iter().all(|(host, _)| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
    }

    /// A client that finds the master through these sentinels (no I/O yet).
    fn client(&self) -> redis::RedisResult<SentinelClient> {
        let addrs = self
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut b = SentinelClientBuilder::new(addrs, &self.service, SentinelServerType::Master)?;
        if self.db != 0 {
            b = b.set_client_to_redis_db(self.db);
        }
        if let Some(u) = &self.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &self.password {
            b = b.set_client_to_redis_password(p);
        }
        if let Some(u) = &self.sentinel_username {
            b = b.set_client_to_sentinel_username(u);
        }
        if let Some(p) = &self.sentinel_password {
            b = b.set_client_to_sentinel_password(p);
        }
        b.build()
    }
}

/// `host[:port]` items, comma-separated; `[v6]` or `[v6]:port` for IPv6.
fn parse_hosts(hosts: &str) -> Result<Vec<(String, u16)>, String> {
    if hosts.is_empty() {
        return Err(
            "no sentinel hosts: list them as redis+sentinel://host1:26379,host2:26379/SERVICE"
                .into(),
        );
    }
    hosts.split(',').map(parse_host).collect()
}

fn parse_host(item: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = item.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("sentinel host {item:?}: no closing ] for an IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("sentinel host {item:?}: expected :PORT after ]")),
            },
        }
    } else {
        match item.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    if host.is_empty() {
        return Err(format!(
            "empty sentinel host in {item:?} (a stray comma, or :PORT without a host?)"
        ));
    }
    if host.contains(['/', '@', ' ', '[', ']']) || (host.contains(':') && !item.starts_with('[')) {
        return Err(format!(
            "sentinel host {host:?} is not a host name or address"
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("sentinel host {host:?}: bad port {p:?} (1-65535)"))?,
    };
    Ok((host.to_owned(), port))
}

fn parse_db(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|db| *db >= 0)
        .ok_or_else(|| format!("bad database {text:?} (a number, 0 or more)"))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Percent-decodes one URL component; `what` names it in errors (never its
/// value, which may be a password).
fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("the {what} has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8 once %-decoded"))
}

/// Finds the current master through the sentinels. Every call asks them
/// again: nothing remembers where the master was, so the first reconnect
/// after a failover reaches the promoted replica.
pub struct Sentinels {
    /// The crate's client (it needs `&mut`), and the master last found,
    /// kept only to log a change.
    inner: Mutex<(SentinelClient, Option<String>)>,
    service: String,
}

impl Sentinels {
    /// Sentinels from a parsed URL (connects lazily).
    pub fn new(url: &SentinelUrl) -> Result<Sentinels, BusError> {
        let client = url
            .client()
            .map_err(|e| BusError(format!("RECALL_REDIS_URL: {e}")))?;
        Ok(Sentinels {
            inner: Mutex::new((client, None)),
            service: url.service.clone(),
        })
    }

    /// A client for the master the sentinels name now (checked with `ROLE`
    /// by the crate), or why there is none.
    pub async fn master(&self) -> Result<redis::Client, BusError> {
        let mut inner = self.inner.lock().await;
        let (sentinels, last) = &mut *inner;
        let found = tokio::time::timeout(DISCOVERY_TIMEOUT, sentinels.async_get_client())
            .await
            .map_err(|_| {
                BusError(format!(
                    "no sentinel named a master for {:?} within {DISCOVERY_TIMEOUT:?}",
                    self.service
                ))
            })?
            .map_err(|e| {
                BusError(format!(
                    "sentinels found no master for {:?}: {e}",
                    self.service
                ))
            })?;
        let addr = found.get_connection_info().addr().to_string();
        if last.as_deref() != Some(addr.as_str()) {
            match last {
                None => {
                    tracing::info!(service = %self.service, master = %addr, "redis sentinel: master found")
                }
                Some(old) => {
                    tracing::warn!(service = %self.service, master = %addr, previous = %old, "redis sentinel: the master changed (failover)")
                }
            }
            *last = Some(addr);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| (h.to_string(), *p)).collect()
    }

    #[test]
    fn hosts_and_service() {
        let u = SentinelUrl::parse("redis+sentinel://h1:26379,h2:26380/mymaster").unwrap();
        assert_eq!(u.sentinels, hosts(&[("h1", 26379), ("h2", 26380)]));
        assert_eq!(u.service, "mymaster");
        assert_eq!(u.db, 0);
        assert_eq!((u.username, u.password), (None, None));
    }

    #[test]
    fn the_port_defaults_to_26379_and_ipv6_is_bracketed() {
        let u = SentinelUrl::parse("redis+sentinel://a,[::1]:26390,[::1],b:1/svc").unwrap();
        assert_eq!(
            u.sentinels,
            hosts(&[("a", 26379), ("::1", 26390), ("::1", 26379), ("b", 1)])
        );
    }

    #[test]
    fn password_user_and_database() {
        let u = SentinelUrl::parse("redis+sentinel://:s%40cret@h1:26379,h2:26379/mymaster?db=3")
            .unwrap();
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.username, None);
        assert_eq!(u.db, 3);
        let u = SentinelUrl::parse("redis+sentinel://app:pw@h1/mymaster/2").unwrap();
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.db, 2);
        let u = SentinelUrl::parse(
            "REDIS+SENTINEL://h/svc/?sentinel_username=s&sentinel_password=p%20w",
        )
        .unwrap();
        assert_eq!(u.sentinel_username.as_deref(), Some("s"));
        assert_eq!(u.sentinel_password.as_deref(), Some("p w"));
        assert_eq!(u.db, 0);
    }

    #[test]
    fn debug_hides_passwords() {
        let u = SentinelUrl::parse("redis+sentinel://:hunter2@h/svc?sentinel_password=swordfish")
            .unwrap();
        let text = format!("{u:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
    }

    /// Each malformed URL and a word its error must contain.
    #[test]
    fn malformed_urls_are_refused_clearly() {
        for (url, says) in [
            ("redis+sentinel:///mymaster", "no sentinel hosts"),
            ("redis+sentinel://:pw@/mymaster", "no sentinel hosts"),
            ("redis+sentinel://h1,,h2/mymaster", "empty sentinel host"),
            ("redis+sentinel://:26379/mymaster", "empty sentinel host"),
            ("redis+sentinel://h1:26379", "no service name"),
            ("redis+sentinel://h1:26379/", "no service name"),
            ("redis+sentinel://h1:26379/?db=1", "no service name"),
            ("redis+sentinel://h1:port/mymaster", "bad port"),
            ("redis+sentinel://h1:0/mymaster", "bad port"),
            ("redis+sentinel://h1:70000/mymaster", "bad port"),
            ("redis+sentinel://h1:/mymaster", "bad port"),
            ("redis+sentinel://[::1/mymaster", "closing ]"),
            ("redis+sentinel://[::1]x/mymaster", ":PORT"),
            ("redis+sentinel://h1:1:2/mymaster", "bad port"),
            ("redis+sentinel://h/svc/x", "bad database"),
            ("redis+sentinel://h/svc?db=-1", "bad database"),
            ("redis+sentinel://h/svc/1?db=1", "given twice"),
            ("redis+sentinel://h/svc/1/2", "too many path segments"),
            ("redis+sentinel://h/svc?timeout=1", "unknown parameter"),
            ("redis+sentinel://h/svc#x", "fragment"),
            ("redis+sentinel://:%zz@h/svc", "bad %-escape"),
            ("rediss+sentinel://h/svc", "not supported"),
            ("redis-sentinel://h/svc", "unknown scheme"),
        ] {
            let err = SentinelUrl::parse(url).expect_err(url);
            assert!(err.contains(says), "{url}: {err:?} should say {says:?}");
            assert!(
                !err.contains("%zz"),
                "{url}: the error repeats a secret: {err}"
            );
        }
    }

    #[test]
    fn sentinel_schemes_are_recognised() {
        assert!(is_sentinel_url("redis+sentinel://h/s"));
        assert!(is_sentinel_url("rediss+sentinel://h/s"));
        assert!(is_sentinel_url("redis-sentinel://h/s"));
        assert!(!is_sentinel_url("redis://sentinel:6379"));
        assert!(!is_sentinel_url("rediss://h"));
    }

    #[test]
    fn loopback_only_when_every_sentinel_is() {
        let local = SentinelUrl::parse("redis+sentinel://127.0.0.1,localhost,[::1]/s").unwrap();
        assert!(local.all_loopback());
        let mixed = SentinelUrl::parse("redis+sentinel://127.0.0.1,10.0.0.2/s").unwrap();
        assert!(!mixed.all_loopback());
    }

    #[test]
    fn a_parsed_url_builds_a_client_without_io() {
        let u = SentinelUrl::parse("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/svc/4").unwrap();
        assert!(Sentinels::new(&u).is_ok());
    }
}
