//! Start-up rebuilds the state from the revocation window only, and a
//! restarted instance rejects revoked tokens from its first request.

use recall::clock::Timestamp;
use recall::events::{Event, Meta, Stamp};
use uuid::Uuid;

use crate::both_stores;
use crate::helpers::{Backend, Kind};

both_stores!(restart_rejects_revoked_tokens_from_the_first_request);

async fn restart_rejects_revoked_tokens_from_the_first_request(kind: Kind) {
    let b = Backend::new(kind).await;
    // A long history outside the window: start-up must not fold it.
    let store = b.store().await;
    let old: Vec<Event> = (0..2000)
        .map(|_| Event::LoggedOut {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
        })
        .collect();
    store
        .append_raw(
            old,
            &Stamp::new(
                &Meta::system(),
                Timestamp::now().minus(std::time::Duration::from_secs(7 * 86_400)),
            ),
        )
        .await
        .unwrap();
    let a = b.spawn().await;
    let (name, kept) = a.signup("hank").await;
    let gone = a.login(&name).await;
    assert_eq!(a.logout(&gone.access).await.status, 204);
    a.stop().await;
    let again = b.spawn().await;
    again
        .assert_me(&gone.access, 401, "revoked before the restart")
        .await;
    again
        .assert_me(&kept.access, 200, "same key, still valid")
        .await;
    let (revoked, _, _) = again.recall().sync().state().sizes();
    assert_eq!(
        revoked, 1,
        "only the window was folded, not the 2000 old logouts"
    );
    again.stop().await;
}
