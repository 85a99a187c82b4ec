//! Network binding: a token bound to the network its session logged in
//! from carries a keyed digest of that network and the session id, never
//! the address. A verifier holding the binding key (from Recall's
//! authenticated feed) recomputes the digest from the request's client
//! address and compares. Without the key the digest says nothing; with it,
//! an attacker can test guesses one at a time (a /24 of IPv4 is one of
//! 2^24, so assume the network can be recovered by whoever has the key:
//! it is given only to services the admin created).

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Versioned label of the digest's input.
const LABEL: &[u8] = b"recall network binding v1";
/// Digest bytes kept (128 bits).
const DIGEST_LEN: usize = 16;

/// The `net` claim of a network-bound token: prefix length of the login's
/// address family and the keyed digest; `rv` when a use from elsewhere
/// revokes the session (the policy's `on_mismatch = revoke`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetBinding {
    pub p: u8,
    pub h: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rv: bool,
}

/// The key verifiers check digests with (32 bytes).
#[derive(Clone)]
pub struct BindingKey(ring::hmac::Key);

impl std::fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindingKey(..)")
    }
}

impl BindingKey {
    /// A key from its bytes.
    pub fn new(bytes: &[u8]) -> Self {
        BindingKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }

    /// A key from its base64url form (as the feed sends it).
    pub fn from_b64(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        (bytes.len() == 32).then(|| BindingKey::new(&bytes))
    }

    /// The digest of `ip`'s network of `prefix` bits for session `sid`.
    pub fn digest(&self, sid: Uuid, ip: IpAddr, prefix: u8) -> String {
        let (family, net) = network_of(ip, prefix);
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        ctx.update(LABEL);
        ctx.update(sid.as_bytes());
        ctx.update(&[family, prefix]);
        ctx.update(&net);
        let tag = ctx.sign();
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..DIGEST_LEN])
    }

    /// The `net` claim for a session logging in from `ip`: the IPv4 or
    /// IPv6 prefix length as the address is.
    pub fn bind(
        &self,
        sid: Uuid,
        ip: IpAddr,
        v4_prefix: u8,
        v6_prefix: u8,
        revoke: bool,
    ) -> NetBinding {
        let p = match canonical(ip) {
            IpAddr::V4(_) => v4_prefix.min(32),
            IpAddr::V6(_) => v6_prefix.min(128),
        };
        NetBinding {
            p,
            h: self.digest(sid, ip, p),
            rv: revoke,
        }
    }

    /// Whether a request from `ip` is inside session `sid`'s bound network.
    /// The comparison is in constant time.
    pub fn matches(&self, sid: Uuid, binding: &NetBinding, ip: IpAddr) -> bool {
        let (family, _) = network_of(ip, binding.p);
        let max = if family == 4 { 32 } else { 128 };
        if binding.p > max {
            return false;
        }
        let ours = self.digest(sid, ip, binding.p);
        let (a, b) = (ours.as_bytes(), binding.h.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The family (4 or 6) and the first `prefix` bits of `ip`, the rest zero.
fn network_of(ip: IpAddr, prefix: u8) -> (u8, Vec<u8>) {
    let (family, mut bytes) = match canonical(ip) {
        IpAddr::V4(v4) => (4, v4.octets().to_vec()),
        IpAddr::V6(v6) => (6, v6.octets().to_vec()),
    };
    let keep = usize::from(prefix);
    for (i, byte) in bytes.iter_mut().enumerate() {
        let first_bit = i * 8;
        if first_bit >= keep {
            *byte = 0;
        } else if keep - first_bit < 8 {
            *byte &= 0xffu8 << (8 - (keep - first_bit));
        }
    }
    (family, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_in_the_same_network_matches_and_another_does_not() {
        let key = BindingKey::new(&[7; 32]);
        let sid = Uuid::now_v7();
        let b = key.bind(sid, ip("203.0.113.5"), 24, 56, false);
        assert_eq!(b.p, 24);
        assert!(key.matches(sid, &b, ip("203.0.113.200")));
        assert!(key.matches(sid, &b, ip("::ffff:203.0.113.9")));
        assert!(!key.matches(sid, &b, ip("203.0.114.5")));
        assert!(!key.matches(sid, &b, ip("2001:db8::1")));
        // Another session from the same network has another digest.
        let other = key.bind(Uuid::now_v7(), ip("203.0.113.5"), 24, 56, false);
        assert_ne!(other.h, b.h);
        assert!(!key.matches(sid, &other, ip("203.0.113.5")));
        // Another key does not match.
        assert!(!BindingKey::new(&[8; 32]).matches(sid, &b, ip("203.0.113.5")));
    }

    #[test]
    fn ipv6_prefixes_and_exact_addresses() {
        let key = BindingKey::new(&[1; 32]);
        let sid = Uuid::now_v7();
        let b = key.bind(sid, ip("2001:db8:aa:bb01::1"), 24, 56, true);
        assert_eq!(b.p, 56);
        assert!(key.matches(sid, &b, ip("2001:db8:aa:bbff::77")));
        assert!(!key.matches(sid, &b, ip("2001:db8:aa:bc00::1")));
        let exact = key.bind(sid, ip("198.51.100.7"), 32, 128, false);
        assert!(key.matches(sid, &exact, ip("198.51.100.7")));
        assert!(!key.matches(sid, &exact, ip("198.51.100.8")));
    }

    #[test]
    fn odd_prefixes_mask_inside_a_byte_and_nonsense_never_matches() {
        assert_eq!(network_of(ip("10.255.255.255"), 12).1, vec![10, 240, 0, 0]);
        assert_eq!(network_of(ip("10.1.2.3"), 0).1, vec![0, 0, 0, 0]);
        let key = BindingKey::new(&[1; 32]);
        let sid = Uuid::now_v7();
        let forged = NetBinding {
            p: 200,
            h: "x".into(),
            rv: false,
        };
        assert!(!key.matches(sid, &forged, ip("10.1.2.3")));
        assert!(BindingKey::from_b64("short").is_none());
        assert!(BindingKey::from_b64(&URL_SAFE_NO_PAD.encode([3u8; 32])).is_some());
    }

    #[test]
    fn the_claim_never_holds_the_address() {
        let key = BindingKey::new(&[9; 32]);
        let b = key.bind(Uuid::now_v7(), ip("203.0.113.5"), 24, 56, true);
        let json = serde_json::to_string(&b).unwrap();
        assert!(!json.contains("203.0.113"), "{json}");
        assert_eq!(serde_json::from_str::<NetBinding>(&json).unwrap(), b);
    }
}
