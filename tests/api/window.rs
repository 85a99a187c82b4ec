//! Rebuilding the state from a revocation window larger than one page of
//! the paged read (10,000 events): every event in the window, none before
//! it, in seq order, and the same state as folding the window whole.

use recall::events::{Event, Meta, Stamp};
use recall::state;
use uuid::Uuid;

use crate::both_stores;
use crate::fixtures::{now_plus, StoreFixture, NOW};
use crate::helpers::Kind;

both_stores!(a_window_of_several_pages_is_read_whole_and_in_order);

const RETENTION: i64 = 330_000;

fn logouts(n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect()
}

async fn a_window_of_several_pages_is_read_whole_and_in_order(kind: Kind) {
    let fx = StoreFixture::new(kind).await;
    let store = &fx.store;
    let meta = Meta::system();
    // In the window, then old events in the middle of the seqs (an
    // instance with a slow clock), then most of the window across pages.
    store
        .append_raw(logouts(10), &Stamp::new(&meta, now_plus(-1000)))
        .await
        .unwrap();
    store
        .append_raw(logouts(100), &Stamp::new(&meta, now_plus(-86_400_000)))
        .await
        .unwrap();
    for _ in 0..5 {
        store
            .append_raw(logouts(5_000), &Stamp::new(&meta, now_plus(-500)))
            .await
            .unwrap();
    }
    let in_window = 10 + 25_000;

    let snap = store.snapshot(now_plus(-RETENTION), NOW).await.unwrap();
    assert_eq!(snap.standing.head, 25_110);
    assert_eq!(snap.events.len(), in_window, "the window, whole");
    assert!(
        snap.events.iter().all(|e| e.at >= now_plus(-RETENTION)),
        "nothing from before the window"
    );
    assert!(
        snap.events.windows(2).all(|w| w[0].seq < w[1].seq),
        "in seq order, no event twice"
    );
    assert_eq!(snap.events[9].seq, 10);
    assert_eq!(snap.events[10].seq, 111, "the old events are skipped");

    let whole = state::from_snapshot(&snap, RETENTION, NOW);
    let (paged, standing, folded) = recall::sync::rebuild::from_window(store, RETENTION, NOW)
        .await
        .unwrap();
    assert_eq!(folded, in_window);
    assert_eq!(standing.head, snap.standing.head);
    assert_eq!(paged.last_seq(), whole.last_seq());
    assert_eq!(paged.sizes(), whole.sizes());
    assert_eq!(paged.sizes().0, in_window, "every window session revoked");
    for env in &snap.events {
        let sid = env.event.session_id().expect("a logout names its session");
        assert!(paged.is_session_revoked(sid), "{sid} forgotten");
    }
}
