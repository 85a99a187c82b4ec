//! The verifier's side of Recall's revocation feed (verifier/src/sse.rs,
//! client.rs, state.rs): the incremental SSE parser fed arbitrary chunks,
//! each message handled as `Verifier::stream` handles it (`revocations`
//! items folded into the state under the message id, `head` heard), and any
//! message data read as a `GET /v1/revocations` page the way `poll` and
//! `load_window` fold it. Then the state answers checks.
//!
//! Input: byte 0 seeds the chunk sizes, the rest is the byte stream (a seed
//! is a real stream). Nothing may panic; the messages must not depend on
//! where the chunks split (between characters); folding is idempotent.
#![no_main]


use libfuzzer_sys::fuzz_target;
use recall_verifier::client::FeedPage;
use recall_verifier::sse::{SseMessage, SseParser};
use recall_verifier::{Kind, Revocation, RevocationState};
use serde::Deserialize;
use uuid::Uuid;

const RETENTION_MS: i64 = 330_000;
const NOW_MS: i64 = 1_700_000_000_000;

/// `client::Head` (private there): the `head` message.
#[derive(Deserialize)]
struct Head {
    #[allow(dead_code)]
    head_seq: i64,
}

/// Splits `bytes` into chunks of pseudo-random sizes (1..=64) from `seed`,
/// anywhere, inside a UTF-8 character too, as a network may.
fn chunks(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut state = seed as u32 | 0x100;
    let mut rest = bytes;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut n = (1 + (state >> 16) % 64) as usize;
        n = n.min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// `Verifier::fold`: one log event's items, then the cursor.
fn fold(state: &mut RevocationState, seq: i64, items: &[Revocation]) {
    for item in items {
        state.apply_item(item);
    }
    state.advance_to(seq);
}

/// What the state says about everyone the items name.
fn answers(state: &RevocationState, items: &[Revocation]) -> Vec<String> {
    let mut out = vec![format!("{:?} {:?}", state.sizes(), state.keys(NOW_MS))];
    for item in items {
        let user = item.sub.unwrap_or(Uuid::nil());
        let session = item.sid.unwrap_or(Uuid::nil());
        let kid = item.kid.as_deref().unwrap_or("k");
        out.push(format!(
            "{:?} {:?} {} {:?}",
            state.check(kid, user, session, 0, NOW_MS),
            state.locked_until(user, NOW_MS),
            state.is_session_revoked(session),
            state.key_status(kid, NOW_MS),
        ));
    }
    out
}

/// Folds the items twice: the second time must change nothing.
fn idempotent(state: &mut RevocationState, items: &[Revocation]) {
    let before = answers(state, items);
    for item in items {
        state.apply_item(item);
    }
    assert_eq!(answers(state, items), before, "folding items twice differs");
}

/// `Verifier::poll`: a page's items grouped by seq, folded in order.
fn poll(state: &mut RevocationState, page: &FeedPage) {
    let items = &page.items;
    let mut i = 0;
    while i < items.len() {
        let seq = items[i].seq;
        let j = items[i..]
            .iter()
            .position(|x| x.seq != seq)
            .map_or(items.len(), |p| i + p);
        fold(state, seq, &items[i..j]);
        i = j;
    }
    state.advance_to(page.next_after);
}

fn handle(state: &mut RevocationState, msg: &SseMessage) {
    match msg.event.as_str() {
        "revocations" => {
            let seq = msg.id.as_deref().and_then(|s| s.parse::<i64>().ok());
            if let (Ok(items), Some(seq)) = (serde_json::from_str::<Vec<Revocation>>(&msg.data), seq)
            {
                let last = state.last_seq();
                fold(state, seq, &items);
                assert!(state.last_seq() >= last, "the cursor moved back");
                idempotent(state, &items);
                for item in &items {
                    if let (Kind::SessionRevoked, Some(sid)) = (item.kind, item.sid) {
                        // Forgotten only once its retention has passed.
                        if item.at.saturating_add(RETENTION_MS) > NOW_MS {
                            assert!(state.is_session_revoked(sid), "a revoked session was not");
                        }
                    }
                }
            }
        }
        "head" => {
            if serde_json::from_str::<Head>(&msg.data).is_ok() {
                state.prune(NOW_MS);
            }
        }
        _ => {}
    }
    // Any data as a page of `GET /v1/revocations`.
    if let Ok(page) = serde_json::from_str::<FeedPage>(&msg.data) {
        let retention = page.retention_ms.unwrap_or(3_600_000);
        let mut window = RevocationState::from_window(&page.items, page.head_seq, retention, NOW_MS);
        assert_eq!(window.last_seq(), page.head_seq);
        poll(&mut window, &page);
        poll(state, &page);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    // The whole stream at once, then in chunks: the same messages.
    let whole = SseParser::default().feed(stream);
    let mut parser = SseParser::default();
    let mut chunked = Vec::new();
    for chunk in chunks(stream, seed) {
        chunked.extend(parser.feed(chunk));
    }
    assert_eq!(whole, chunked, "messages depend on where the chunks split");

    let mut state = RevocationState::new(RETENTION_MS);
    for msg in &chunked {
        handle(&mut state, msg);
    }
    let _ = (state.retirement_due(NOW_MS), state.active_kid());
});
