//! Redis notices (src/bus/notice.rs): `NoticeAuth::open`, which checks the
//! HMAC tag of `base64url(tag) "." json` before decoding the event envelope.
//! Redis is untrusted, so this is what an attacker on the channel reaches.
//!
//! The first input byte picks a mode:
//! - `0x00`: the rest is a notice *body*; the harness tags it with the real
//!   key, so the envelope decoding behind the tag is reached. What opens must
//!   seal and open again to the same envelope, and must not open on another
//!   channel or under another master key.
//! - anything else: the whole input is a payload off the wire (a seed is a
//!   real sealed notice). If it opens, its tag must be exactly
//!   base64url(HMAC-SHA256(HKDF(master, channel), json)), computed here
//!   without Recall's code: anything else opening is an accepted forgery.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use recall::bus::notice::{NoticeAuth, NoticeRejected};
use recall::events::Envelope;
use recall::keys::MasterKey;
use sha2::Sha256;

/// Fixed, so the committed seeds (fuzz/gen_seeds.py) open.
const MASTER: [u8; 32] = *b"recall-fuzz-notice-master-key-01";
const CHANNEL: &str = "recall:notices";
/// The HKDF salt of src/bus/notice.rs (private there; the format's v1).
const SALT: &[u8] = b"recall notices v1";

struct Fixture {
    auth: NoticeAuth,
    other_channel: NoticeAuth,
    other_master: NoticeAuth,
    key: [u8; 32],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let master = MasterKey::parse(&STANDARD.encode(MASTER)).expect("master key");
        let other = MasterKey::parse(&STANDARD.encode([9u8; 32])).expect("master key");
        Fixture {
            auth: NoticeAuth::new(&master, CHANNEL),
            other_channel: NoticeAuth::new(&master, "recall:other"),
            other_master: NoticeAuth::new(&other, CHANNEL),
            key: master.derive(SALT, CHANNEL.as_bytes()),
        }
    })
}

/// The tag, computed independently of Recall's code.
fn tag(key: &[u8; 32], json: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(json);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// An opened envelope: it must survive a seal/open round trip, and no other
/// channel or deployment may open the payload.
fn check_opened(f: &Fixture, payload: &[u8], env: &Envelope) {
    assert_eq!(
        f.other_channel.open(payload),
        Err(NoticeRejected::BadTag),
        "a notice opened on another channel"
    );
    assert_eq!(
        f.other_master.open(payload),
        Err(NoticeRejected::BadTag),
        "a notice opened under another master key"
    );
    let resealed = f.auth.seal(env);
    let reopened = f
        .auth
        .open(&resealed)
        .unwrap_or_else(|e| panic!("a sealed notice does not open: {e:?}: {env:?}"));
    assert_eq!(&reopened, env, "seal/open changed the envelope");
    // What the subscriber does next with it.
    let _ = recall::state::items(env);
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    match data.split_first() {
        Some((0x00, body)) => {
            let mut payload = tag(&f.key, body).into_bytes();
            payload.push(b'.');
            payload.extend_from_slice(body);
            match f.auth.open(&payload) {
                Ok(env) => check_opened(f, &payload, &env),
                Err(NoticeRejected::Undecodable) => {}
                Err(e) => panic!("a correctly tagged notice was refused as {e:?}"),
            }
        }
        _ => {
            let Ok(env) = f.auth.open(data) else { return };
            let genuine = data.len() >= 44 && {
                let (t, json) = (&data[..43], &data[44..]);
                data[43] == b'.' && t == tag(&f.key, json).as_bytes()
            };
            if !genuine {
                panic!("FORGED NOTICE ACCEPTED: {:?}", String::from_utf8_lossy(data));
            }
            check_opened(f, data, &env);
        }
    }
});
