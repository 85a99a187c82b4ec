//! A request as the verifier sees it when a token may be bound (to a
//! DPoP key, to a network): the token and its scheme, the `DPoP` header,
//! the method and URI a proof must name, and the client address. Pure
//! parsing, no I/O; the actix extractor, the tower layer and the
//! `recall verifier` sidecar build a [`Presented`] with these helpers.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::VerifyError;

/// What a request presents with its token, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The access token (after `Bearer ` or `DPoP `).
    pub token: &'a str,
    /// Whether it came as `Authorization: DPoP <token>` (RFC 9449)
    /// rather than `Bearer`.
    pub dpop_scheme: bool,
    /// The request's `DPoP` header(s).
    pub proof: DpopHeader<'a>,
    /// The request's method (`GET`), the `htm` a proof must name.
    pub htm: &'a str,
    /// The request's path (`/orders/7`, a query is ignored), resolved
    /// against `Config::public_url`; or an absolute `http(s)` URI, used
    /// as it is (forward auth's `X-Original-URI` may be one). The `htu`
    /// a proof must name.
    pub uri: &'a str,
    /// The client's address (see [`client_addr`]); `None` when unknown,
    /// which no network-bound token accepts.
    pub client_ip: Option<IpAddr>,
}

/// The `DPoP` header of a request (RFC 9449 4.3: exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopHeader<'a> {
    /// No `DPoP` header.
    Absent,
    /// One, as text.
    One(&'a str),
    /// Several, or one that is not visible ASCII: refused.
    Invalid,
}

impl<'a> DpopHeader<'a> {
    /// From every `DPoP` header value of a request, in order (`None` for a
    /// value that is not text).
    pub fn from_values(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (None, _) => DpopHeader::Absent,
            (Some(Some(one)), None) => DpopHeader::One(one.trim()),
            _ => DpopHeader::Invalid,
        }
    }
}

/// The token of an `Authorization` value and whether its scheme is `DPoP`
/// (`Bearer` and `DPoP`, case-insensitive); anything else is `Missing`.
pub fn parse_authorization(value: Option<&str>) -> Result<(&str, bool), VerifyError> {
    let value = value.ok_or(VerifyError::Missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(VerifyError::Missing)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(VerifyError::Missing);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok((token, false))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Ok((token, true))
    } else {
        Err(VerifyError::Missing)
    }
}

/// The client address: the peer, unless the peer is a trusted proxy; then
/// the rightmost `X-Forwarded-For` entry that is not a trusted proxy
/// ([`rightmost_untrusted`]). `None` when the peer is unknown.
pub fn client_addr(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[IpNet],
) -> Option<IpAddr> {
    peer.map(|peer| rightmost_untrusted(peer, forwarded_for, trusted))
}

/// Recall's rule (`src/http/extract.rs`): proxies such as nginx append the
/// address they saw on the right, so everything left of it is the
/// client's own writing. Walking from the right, trusted proxies are
/// skipped and the first other address wins; when all are trusted, the
/// leftmost. An unparsable entry falls back to the peer; `Forwarded` is
/// ignored; an untrusted peer's header is ignored.
pub fn rightmost_untrusted(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for entry in entries.collect::<Vec<_>>().into_iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            return peer;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Comma-separated CIDRs or addresses (`127.0.0.0/8,::1`), as
/// `RECALL_TRUSTED_PROXIES` takes them; blanks are skipped.
pub fn parse_trusted_proxies(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{t:?} is not a CIDR (like 10.0.0.0/8) or an address"))
        })
        .collect()
}

/// Recall's default trusted proxies: loopback (`127.0.0.0/8`, `::1`).
pub fn default_trusted_proxies() -> Vec<IpNet> {
    parse_trusted_proxies("127.0.0.0/8,::1").unwrap_or_default()
}

/// The `htu` a request's proof must name: an absolute `http(s)` URI as it
/// is, a path after `public_url` (its trailing `/` dropped). `None` for a
/// path when there is no public URL.
pub fn resolve_htu(public_url: Option<&str>, uri: &str) -> Option<String> {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(uri.to_owned());
    }
    let base = public_url?.trim().trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    Some(if uri.starts_with('/') {
        format!("{base}{uri}")
    } else {
        format!("{base}/{uri}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(text: &str) -> Vec<IpNet> {
        parse_trusted_proxies(text).unwrap()
    }

    /// The cases of `rightmost_untrusted` in Recall's `src/http/extract.rs`.
    #[test]
    fn the_rightmost_untrusted_forwarded_address_wins() {
        let lo = nets("127.0.0.0/8,::1");
        assert_eq!(lo, default_trusted_proxies());
        // nginx appended the real address on the right; the left is forged.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.5"], &lo),
            ip("203.0.113.5")
        );
        // Chains of trusted proxies are skipped.
        let chain = nets("127.0.0.0/8,10.0.0.0/8");
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.5, 10.1.1.1"], &chain),
            ip("203.0.113.5")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["6.6.6.6", "198.51.100.7"], &lo),
            ip("198.51.100.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.2"), &["6.6.6.6"], &nets("127.0.0.1/32")),
            ip("127.0.0.2")
        );
        // Unparsable entries fall back to the peer; no header: the peer.
        for bad in ["not-an-ip", "203.0.113.5:4711", "", "6.6.6.6, "] {
            assert_eq!(
                rightmost_untrusted(ip("127.0.0.1"), &[bad], &lo),
                ip("127.0.0.1"),
                "{bad:?}"
            );
        }
        assert_eq!(rightmost_untrusted(ip("::1"), &[], &lo), ip("::1"));
        // All trusted: the leftmost (an internal client).
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["10.2.3.4, 10.1.1.1"], &chain),
            ip("10.2.3.4")
        );
        // No trusted proxies at all: always the peer.
        assert_eq!(
            rightmost_untrusted(ip("127.0.0.1"), &["203.0.113.5"], &[]),
            ip("127.0.0.1")
        );
        assert_eq!(client_addr(None, &["203.0.113.5"], &lo), None);
        assert_eq!(
            client_addr(Some(ip("::1")), &["2001:db8::7"], &lo),
            Some(ip("2001:db8::7"))
        );
    }

    #[test]
    fn trusted_proxies_parse_as_cidrs_or_addresses() {
        assert_eq!(
            nets(" 10.0.0.0/8, 192.0.2.1 ,,::1"),
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.1/32".parse().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        assert!(parse_trusted_proxies("").unwrap().is_empty());
        let e = parse_trusted_proxies("10.0.0.0/8,nope").unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn the_authorization_scheme_is_bearer_or_dpop_in_any_case() {
        assert_eq!(
            parse_authorization(Some("Bearer a.b.c")),
            Ok(("a.b.c", false))
        );
        assert_eq!(
            parse_authorization(Some("bearer  a.b.c ")),
            Ok(("a.b.c", false))
        );
        assert_eq!(parse_authorization(Some("DPoP a.b.c")), Ok(("a.b.c", true)));
        assert_eq!(parse_authorization(Some("dpop a.b.c")), Ok(("a.b.c", true)));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer  "),
            Some("Basic a.b.c"),
            Some("a.b.c"),
        ] {
            assert_eq!(
                parse_authorization(bad),
                Err(VerifyError::Missing),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn exactly_one_dpop_header_is_a_proof() {
        assert_eq!(DpopHeader::from_values([]), DpopHeader::Absent);
        assert_eq!(DpopHeader::from_values([Some("p")]), DpopHeader::One("p"));
        assert_eq!(
            DpopHeader::from_values([Some("p"), Some("q")]),
            DpopHeader::Invalid
        );
        assert_eq!(DpopHeader::from_values([None]), DpopHeader::Invalid);
    }

    #[test]
    fn htu_is_the_public_url_and_the_path_or_an_absolute_uri() {
        let base = Some("https://api.example.com/");
        assert_eq!(
            resolve_htu(base, "/orders/7?x=1").as_deref(),
            Some("https://api.example.com/orders/7?x=1")
        );
        assert_eq!(
            resolve_htu(base, "orders").as_deref(),
            Some("https://api.example.com/orders")
        );
        assert_eq!(
            resolve_htu(Some("https://example.com/api"), "/orders").as_deref(),
            Some("https://example.com/api/orders")
        );
        assert_eq!(
            resolve_htu(None, "HTTPS://other.example/x").as_deref(),
            Some("HTTPS://other.example/x")
        );
        assert_eq!(resolve_htu(None, "/orders"), None);
        assert_eq!(resolve_htu(Some("  "), "/orders"), None);
    }
}
