//! The notice wire format and its authentication (G9). Redis is untrusted:
//! anyone who can publish on the channel could otherwise move an instance's
//! `last_seq` or apply a forged event. Every notice is
//! `base64url(HMAC-SHA256(key, json)) "." json`, the key derived with HKDF
//! from `RECALL_MASTER_KEY` and the channel name, so a notice from anyone
//! without the master key, from another deployment, or meant for another
//! channel fails, and operators configure nothing new.
//!
//! May import: what `bus` may (its top comment).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::events::Envelope;
use crate::keys::MasterKey;

/// HKDF salt naming this key's one purpose (and the format's version).
const SALT: &[u8] = b"recall notices v1";
/// Length of the base64url form of a 32-byte tag.
const TAG_B64_LEN: usize = 43;

/// Why a notice was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoticeRejected {
    /// No `tag.json` shape, or a tag that is not 32 bytes of base64url.
    #[error("not an authenticated notice")]
    Malformed,
    /// The tag does not match: forged, altered, another deployment's master
    /// key, or another channel's.
    #[error("bad notice tag")]
    BadTag,
    /// Authentic bytes that do not decode as an event (a newer format).
    #[error("undecodable notice body")]
    Undecodable,
}

/// Signs and checks notices on one channel.
#[derive(Clone)]
pub struct NoticeAuth {
    key: [u8; 32],
}

impl std::fmt::Debug for NoticeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeAuth(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl NoticeAuth {
    /// The authenticator for `channel` under `master`.
    pub fn new(master: &MasterKey, channel: &str) -> Self {
        NoticeAuth {
            key: master.derive(SALT, channel.as_bytes()),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// The notice for one committed event: ids, seq, type and times only (G7).
    pub fn seal(&self, env: &Envelope) -> Vec<u8> {
        let json = serde_json::to_vec(env).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&json);
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let mut out = Vec::with_capacity(tag.len() + 1 + json.len());
        out.extend_from_slice(tag.as_bytes());
        out.push(b'.');
        out.extend_from_slice(&json);
        out
    }

    /// Checks the tag (in constant time) and only then decodes the event.
    pub fn open(&self, payload: &[u8]) -> Result<Envelope, NoticeRejected> {
        if payload.len() <= TAG_B64_LEN || payload[TAG_B64_LEN] != b'.' {
            return Err(NoticeRejected::Malformed);
        }
        let (tag, json) = (&payload[..TAG_B64_LEN], &payload[TAG_B64_LEN + 1..]);
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| NoticeRejected::Malformed)?;
        let mut mac = self.mac();
        mac.update(json);
        // `verify_slice` compares in constant time (subtle).
        mac.verify_slice(&tag).map_err(|_| NoticeRejected::BadTag)?;
        serde_json::from_slice(json).map_err(|_| NoticeRejected::Undecodable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    fn env(seq: i64) -> Envelope {
        let user_id = uuid::Uuid::now_v7();
        Envelope {
            seq,
            stream: format!("user:{user_id}"),
            version: 1,
            at: crate::clock::Timestamp::from_ms(1_700_000_000_000),
            actor: Some("system".into()),
            ip: None,
            event: Event::UserUnlocked { user_id },
        }
    }

    #[test]
    fn a_sealed_notice_opens_on_the_same_channel_under_the_same_master_key() {
        let master = MasterKey::generate();
        let auth = NoticeAuth::new(&master, "recall:notices");
        let e = env(7);
        let opened = auth.open(&auth.seal(&e)).unwrap();
        assert_eq!(opened, e);
    }

    #[test]
    fn forged_altered_foreign_and_garbage_notices_are_rejected() {
        let master = MasterKey::generate();
        let auth = NoticeAuth::new(&master, "recall:notices");
        let sealed = auth.seal(&env(3));
        // Another deployment (master key) and another channel.
        let other_master = NoticeAuth::new(&MasterKey::generate(), "recall:notices");
        let other_channel = NoticeAuth::new(&master, "recall:other");
        assert_eq!(other_master.open(&sealed), Err(NoticeRejected::BadTag));
        assert_eq!(other_channel.open(&sealed), Err(NoticeRejected::BadTag));
        // The old unauthenticated form: plain JSON.
        let plain = serde_json::to_vec(&env(4)).unwrap();
        assert_eq!(auth.open(&plain), Err(NoticeRejected::Malformed));
        // One flipped bit in the body, and in the tag.
        let mut body = sealed.clone();
        let last = body.len() - 2;
        body[last] ^= 1;
        assert_eq!(auth.open(&body), Err(NoticeRejected::BadTag));
        let mut tag = sealed.clone();
        tag[0] = if tag[0] == b'A' { b'B' } else { b'A' };
        assert!(auth.open(&tag).is_err());
        // Truncations at every length, and garbage.
        for n in 0..sealed.len() {
            assert!(auth.open(&sealed[..n]).is_err(), "truncated at {n}");
        }
        assert!(auth.open(&[0xff; 100]).is_err());
        let mut bad_b64 = vec![b'!'; TAG_B64_LEN];
        bad_b64.extend_from_slice(b".{}");
        assert_eq!(auth.open(&bad_b64), Err(NoticeRejected::Malformed));
    }

    #[test]
    fn an_authentic_but_undecodable_body_is_rejected_not_applied() {
        let auth = NoticeAuth::new(&MasterKey::generate(), "c");
        let json = br#"{"seq":1,"event":"from the future"}"#;
        let mut mac = auth.mac();
        mac.update(json);
        let mut payload = URL_SAFE_NO_PAD
            .encode(mac.finalize().into_bytes())
            .into_bytes();
        payload.push(b'.');
        payload.extend_from_slice(json);
        assert_eq!(auth.open(&payload), Err(NoticeRejected::Undecodable));
    }
}
