//! The PostgreSQL URL's TLS options: libpq's `sslmode` and `sslrootcert`,
//! which tokio-postgres does not parse, taken out of the URL before it
//! does. Multi-host URLs and `target_session_attrs` pass through to it.
//!
//! May import: what `store` may (its top comment) (its own helpers: `sql`, `rows`, `work`).

use super::StoreError;

/// The libpq `sslmode` values Recall understands, and what each means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// No TLS (`disable`; also `allow`, `prefer` and no `sslmode`: plaintext,
    /// as before, meant for loopback).
    Plain,
    /// TLS required; the chain is verified (`require`, `verify-ca`).
    Chain,
    /// TLS required; chain and hostname verified (`verify-full`).
    Full,
}

/// Takes `sslmode` and `sslrootcert` out of a URL or key=value connection
/// string (tokio-postgres parses neither `verify-*` nor `sslrootcert`).
pub(super) fn split_tls_options(
    url: &str,
) -> Result<(String, SslMode, Option<String>), StoreError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> bool {
        match key {
            "sslmode" => {
                mode = Some(value.to_owned());
                true
            }
            "sslrootcert" => {
                root = Some(value.to_owned());
                true
            }
            _ => false,
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        !take(k, v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k.trim(), v.trim())
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mode = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => SslMode::Plain,
        Some("require" | "verify-ca") => SslMode::Chain,
        Some("verify-full") => SslMode::Full,
        Some(other) => {
            return Err(StoreError::Config(format!(
                "RECALL_DATABASE_URL: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    Ok((rest, mode, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url_and_pick_the_mode() {
        let (url, mode, root) = split_tls_options(
            "postgres://u:p@db:5432/recall?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/recall?application_name=x");
        assert_eq!(mode, SslMode::Full);
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (url, mode, _) = split_tls_options("postgres://db/recall?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://db/recall", SslMode::Chain)
        );
        let (_, mode, _) = split_tls_options("postgres://127.0.0.1/recall").unwrap();
        assert_eq!(mode, SslMode::Plain);
        let (url, mode, _) =
            split_tls_options("host=db user=u sslmode=verify-ca dbname=recall").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("host=db user=u dbname=recall", SslMode::Chain)
        );
        let err = split_tls_options("postgres://db/r?sslmode=sometimes").unwrap_err();
        assert!(err.to_string().contains("RECALL_DATABASE_URL"), "{err}");
    }
}
