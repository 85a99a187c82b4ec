//! The `htu` comparison of DPoP proofs: URIs normalized per RFC 3986
//! (sections 6.2.2 and 6.2.3), as RFC 9449 4.3 recommends, so that a proof
//! and the request it came with compare equal whatever their spelling.
//! Pure string code: imports nothing of the crate.

/// Normalizes an `htu` (or the request URI it is compared with) per RFC
/// 3986 sections 6.2.2 and 6.2.3, as RFC 9449 4.3 recommends: drops the
/// query and fragment, lowercases scheme and host, drops the default port
/// (`:443` for https, `:80` for http) and an empty one, makes an empty path
/// `/`, uppercases percent-encodings and decodes those of unreserved
/// characters, and removes `.` and `..` path segments.
///
/// `None` if `uri` is not an absolute `http` or `https` URI with a host,
/// carries userinfo, a bad port or bad percent-encoding, or has characters
/// outside those URIs allow (before its query).
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    if !uri.bytes().all(is_uri_byte) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return None;
    }
    // The port is after the last ':' that is not inside an IP literal.
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port),
        _ => (authority, ""),
    };
    if host.is_empty() {
        return None;
    }
    let host = if let Some(literal) = host.strip_prefix('[') {
        // An IP literal: one pair of brackets around something.
        let inner = literal.strip_suffix(']')?;
        if inner.is_empty() || inner.contains(['[', ']']) {
            return None;
        }
        host.to_ascii_lowercase()
    } else {
        if host.contains(['[', ']', ':']) {
            return None;
        }
        normalize_pct(host)?.to_ascii_lowercase()
    };
    let port = if port.is_empty() {
        None
    } else {
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok()?;
        (port != default_port).then_some(port)
    };
    if path.contains(['[', ']']) {
        return None;
    }
    let path = remove_dot_segments(&normalize_pct(path)?);

    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&path);
    Some(out)
}

/// Bytes an http(s) URI may hold (RFC 3986 2.2, 2.3, and `%`).
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Uppercases percent-encodings and decodes those of unreserved characters
/// (RFC 3986 6.2.2.1, 6.2.2.2); `None` on a `%` not followed by two hex digits.
fn normalize_pct(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let (hi, lo) = (bytes.next()?, bytes.next()?);
        let (h, l) = (char::from(hi).to_digit(16)?, char::from(lo).to_digit(16)?);
        // Two hex digits: at most 0xFF.
        let decoded = u8::try_from(h * 16 + l).ok()?;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(hi).to_ascii_uppercase());
            out.push(char::from(lo).to_ascii_uppercase());
        }
    }
    Some(out)
}

/// An absolute path with `.` and `..` segments resolved (RFC 3986 5.2.4,
/// 6.2.2.3); an empty path is `/` (6.2.3).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        trailing_slash = false;
        match segment {
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_htu_cases() {
        let n = |s: &str| normalize_htu(s);
        assert_eq!(
            n("HTTPS://Example.COM:443/A/b?q#f").as_deref(),
            Some("https://example.com/A/b")
        );
        assert_eq!(
            n("http://example.com:80").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            n("http://example.com:").as_deref(),
            Some("http://example.com/")
        );
        assert_eq!(
            n("http://example.com:443/").as_deref(),
            Some("http://example.com:443/")
        );
        assert_eq!(
            n("https://example.com:08443/").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            n("https://[::1]:8443/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(n("https://[::1]/x").as_deref(), Some("https://[::1]/x"));
        assert_eq!(n("https://[::1/x"), None);
        assert_eq!(
            n("https://e.com/a%2fb%7e").as_deref(),
            Some("https://e.com/a%2Fb~")
        );
        assert_eq!(
            n("https://e.com/a/b/../../..").as_deref(),
            Some("https://e.com/")
        );
        assert_eq!(n("https://e.com/a/.").as_deref(), Some("https://e.com/a/"));
        assert_eq!(
            n("https://e.com/a//b").as_deref(),
            Some("https://e.com/a//b")
        );
        assert_eq!(n("https://e.com?x").as_deref(), Some("https://e.com/"));
        for bad in [
            "",
            "https://",
            "https:///x",
            "ftp://e.com/",
            "https:e.com/",
            "https://e.com:99999/",
            "https://e.com:+1/",
            "https://e.com:a/",
            "https://u:p@e.com/",
            "https://e.com/a b",
            "https://e.com/%zz",
            "https://e.com/%4",
            "https://e.com/é",
            "https://e.com\\@evil.com/",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
