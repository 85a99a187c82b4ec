//! Forensics (G14): `POST /v1/admin/forensics/validity` and `recall admin
//! replay` answer from the log whether a token (or any token of a session)
//! would have been accepted at a past moment, and which events decide it.
//! Hostile questions first, then the story of one user, then a seeded
//! random run checked against what the instance answered live.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use recall::clock::{rfc3339, Timestamp};
use serde_json::{json, Value};

use crate::both_stores;
use crate::consistency::exec;
use crate::fixtures::start;
use crate::helpers::*;

both_stores!(
    hostile_questions_get_clean_400s,
    only_admins_may_ask,
    a_logout_a_lock_and_a_password_change_decide_from_their_events_on,
    a_compromised_rotation_kills_old_tokens_and_a_refresh_revives_the_session,
    a_pruned_log_answers_only_for_what_it_still_covers,
    a_lock_whose_event_was_pruned_still_decides,
);

pub const VALIDITY: &str = "/v1/admin/forensics/validity";

/// A moment strictly between what happened before and what happens next
/// (event times and T never tie).
pub async fn moment() -> i64 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let t = Timestamp::now().ms();
    tokio::time::sleep(Duration::from_millis(2)).await;
    t
}

/// Asks about `question` (`{token}` or `{session_id}`) at `t`.
pub async fn ask(app: &TestApp, mut question: Value, t: i64) -> Res {
    question["at"] = json!(rfc3339(t));
    app.admin_post(VALIDITY, question).await
}

/// The answer about this token at `t`, which must be a 200.
pub async fn token_at(app: &TestApp, token: &str, t: i64) -> Value {
    let res = ask(app, json!({ "token": token }), t).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

/// The answer about this session at `t`, which must be a 200.
pub async fn session_at(app: &TestApp, session_id: &str, t: i64) -> Value {
    let res = ask(app, json!({ "session_id": session_id }), t).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

/// `decided_by` as (seq, type) pairs.
fn decided(answer: &Value) -> Vec<(i64, String)> {
    answer["decided_by"]
        .as_array()
        .unwrap_or_else(|| panic!("no decided_by: {answer}"))
        .iter()
        .map(|e| {
            rfc3339_ms(e["at"].as_str().unwrap());
            assert!(e["actor"].is_string(), "{e}");
            (
                e["seq"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts the verdict and the events deciding it.
fn assert_answer(answer: &Value, reason: &str, decided_by: &[(i64, &str)]) {
    assert_eq!(answer["reason"], reason, "{answer}");
    assert_eq!(answer["valid"], reason == "valid", "{answer}");
    let want: Vec<(i64, String)> = decided_by
        .iter()
        .map(|(s, k)| (*s, k.to_string()))
        .collect();
    assert_eq!(decided(answer), want, "{answer}");
}

/// The seq of the one event of this user's of type `kind` that `pick`s.
async fn seq_of(app: &TestApp, user_id: &str, kind: &str, pick: impl Fn(&Value) -> bool) -> i64 {
    let found = events(app, &format!("user_id={user_id}&type={kind}")).await;
    let mut hits = found.iter().filter(|e| pick(e));
    let hit = hits
        .next()
        .unwrap_or_else(|| panic!("no {kind}: {found:?}"));
    assert!(hits.next().is_none(), "more than one {kind}: {found:?}");
    hit["seq"].as_i64().unwrap()
}

/// The seq of this session's login.
async fn login_seq(app: &TestApp, s: &Session) -> i64 {
    seq_of(app, &s.user_id, "login_succeeded", |e| {
        e["session_id"] == s.session_id.as_str()
    })
    .await
}

/// A numeric claim of a token (read, not verified).
pub fn claim(token: &str, name: &str) -> i64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims[name].as_i64().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with this header over `payload`, signed by `key`.
fn signed(header: Value, payload: &str, key: &SigningKey) -> String {
    let input = format!("{}.{payload}", b64(header.to_string().as_bytes()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

async fn hostile_questions_get_clean_400s(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, s) = app.signup("fx-hostile").await;
    let now = Timestamp::now().ms();
    let kid = kid_of(&s.access);
    let mut parts = s.access.split('.');
    let (header, payload) = (parts.next().unwrap(), parts.next().unwrap());
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let typed = |kid: &str| json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
    let mut flipped = s.access.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let tokens = [
        ("forged signature", String::from_utf8(flipped).unwrap()),
        ("truncated", s.access[..s.access.len() / 2].to_owned()),
        ("header only", format!("{header}.")),
        (
            "alg none",
            format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"at+jwt"}"#)),
        ),
        ("alg none, our kid", {
            let h = json!({ "alg": "none", "typ": "at+jwt", "kid": kid });
            format!("{}.{payload}.", b64(h.to_string().as_bytes()))
        }),
        (
            "HS256",
            signed(
                json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid }),
                payload,
                &stranger,
            ),
        ),
        (
            "unknown kid",
            signed(typed("no-such-key"), payload, &stranger),
        ),
        (
            "our kid, another key",
            signed(typed(&kid), payload, &stranger),
        ),
        (
            "no kid",
            signed(
                json!({ "alg": "EdDSA", "typ": "at+jwt" }),
                payload,
                &stranger,
            ),
        ),
        ("garbage", "not a token at all".to_owned()),
        ("empty", String::new()),
        ("huge", "a".repeat(10_000)),
        ("unicode", "é.é.é".to_owned()),
    ];
    for (what, token) in &tokens {
        let res = ask(&app, json!({ "token": token }), now).await;
        assert_error(&res, 400, "invalid_request");
        let text = res.body["error_description"].as_str().unwrap();
        assert!(text.contains("token"), "{what}: {text}");
    }
    let session = json!(s.session_id);
    let bodies = [
        (
            "both",
            json!({ "token": s.access, "session_id": session, "at": rfc3339(now) }),
            "token",
        ),
        ("neither", json!({ "at": rfc3339(now) }), "token"),
        ("no at", json!({ "token": s.access }), "at"),
        (
            "at not a time",
            json!({ "token": s.access, "at": "yesterday" }),
            "at",
        ),
        (
            "at without a zone",
            json!({ "token": s.access, "at": "2026-01-01T00:00:00" }),
            "at",
        ),
        ("at a number", json!({ "token": s.access, "at": now }), "at"),
        (
            "at out of range",
            json!({ "token": s.access, "at": "2026-02-30T00:00:00Z" }),
            "at",
        ),
        (
            "session not a uuid",
            json!({ "session_id": "nope", "at": rfc3339(now) }),
            "session_id",
        ),
        (
            "token not a string",
            json!({ "token": 5, "at": rfc3339(now) }),
            "token",
        ),
        (
            "unknown field",
            json!({ "token": s.access, "at": rfc3339(now), "x": 1 }),
            "x",
        ),
        ("not an object", json!([1, 2]), ""),
    ];
    for (what, body, field) in bodies {
        let res = app.admin_post(VALIDITY, body).await;
        assert_error(&res, 400, "invalid_request");
        let text = res.body["error_description"].as_str().unwrap();
        assert!(text.contains(field), "{what}: {text}");
    }
    let res = app
        .raw(
            VALIDITY,
            "application/json",
            b"{\"at\":".to_vec(),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    // A session nobody had is an answer, not an error.
    let nobody = session_at(&app, &uuid::Uuid::now_v7().to_string(), now).await;
    assert_eq!(nobody["reason"], "unknown_session", "{nobody}");
    assert_eq!(nobody["valid"], false);
    assert_eq!(nobody["user_id"], Value::Null);
    // Extreme but well-formed times are answers too.
    for at in [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00+14:00",
    ] {
        let res = app
            .admin_post(VALIDITY, json!({ "token": s.access, "at": at }))
            .await;
        assert_eq!(res.status, 200, "{at}: {}", res.body);
    }
    app.stop().await;
}

async fn only_admins_may_ask(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, s) = app.signup("fx-nosy").await;
    let body = json!({ "token": s.access, "at": rfc3339(Timestamp::now().ms()) });
    let res = app.post(VALIDITY, Some(&s.access), body.clone()).await;
    assert_error(&res, 403, "forbidden");
    let res = app.post(VALIDITY, None, body.clone()).await;
    assert_error(&res, 401, "invalid_token");
    let res = app
        .post(VALIDITY, Some("not-the-admin-token-0123456789abcdef"), body)
        .await;
    assert_eq!(res.status, 401, "{}", res.body);
    app.stop().await;
}

async fn a_logout_a_lock_and_a_password_change_decide_from_their_events_on(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (name, s) = app.signup("fx-story").await;
    let user = s.user_id.clone();
    let login = login_seq(&app, &s).await;
    let logins = events(&app, &format!("user_id={user}&type=login_succeeded")).await;
    let logged_in = at_ms(&logins[0]);
    assert_answer(
        &token_at(&app, &s.access, logged_in - 1).await,
        "not_yet_issued",
        &[],
    );

    // A logout.
    let before = moment().await;
    assert_eq!(app.logout(&s.access).await.status, 204);
    let after = moment().await;
    let logout = seq_of(&app, &user, "logged_out", |_| true).await;
    let ok = token_at(&app, &s.access, before).await;
    assert_answer(&ok, "valid", &[(login, "login_succeeded")]);
    assert_eq!(ok["session_id"], s.session_id.as_str());
    assert_eq!(ok["user_id"], user.as_str());
    let ended = [(login, "login_succeeded"), (logout, "logged_out")];
    assert_answer(
        &token_at(&app, &s.access, after).await,
        "session_revoked",
        &ended,
    );
    assert_answer(
        &session_at(&app, &s.session_id, after).await,
        "session_revoked",
        &ended,
    );
    assert_answer(
        &session_at(&app, &s.session_id, before).await,
        "valid",
        &[(login, "login_succeeded")],
    );

    // An admin lock, then an unlock.
    let s2 = app.login(&name).await;
    let login2 = login_seq(&app, &s2).await;
    let before = moment().await;
    let res = app
        .admin_user_action(&user, "lock", json!({ "reason": "forensics" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let lock = res.body["seq"].as_i64().unwrap();
    let during = moment().await;
    let res = app.admin_user_action(&user, "unlock", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let unlocked = moment().await;
    let s3 = app.login(&name).await;
    let login3 = login_seq(&app, &s3).await;
    let later = moment().await;
    assert_answer(
        &token_at(&app, &s2.access, before).await,
        "valid",
        &[(login2, "login_succeeded")],
    );
    let by_lock = [(login2, "login_succeeded"), (lock, "user_locked")];
    assert_answer(
        &token_at(&app, &s2.access, during).await,
        "user_locked",
        &by_lock,
    );
    assert_answer(
        &token_at(&app, &s2.access, unlocked).await,
        "session_revoked",
        &by_lock,
    );
    assert_answer(
        &token_at(&app, &s3.access, during).await,
        "not_yet_issued",
        &[],
    );
    assert_answer(
        &token_at(&app, &s3.access, later).await,
        "valid",
        &[(login3, "login_succeeded")],
    );

    // A password change ends the other sessions, not the one it came from.
    let s4 = app.login(&name).await;
    let login4 = login_seq(&app, &s4).await;
    let before = moment().await;
    let res = app
        .change_password(&s3.access, PASSWORD, "a new password 42")
        .await;
    assert_eq!(res.status, 204, "{}", res.body);
    let after = moment().await;
    let changed = seq_of(&app, &user, "password_changed", |_| true).await;
    assert_answer(
        &token_at(&app, &s4.access, before).await,
        "valid",
        &[(login4, "login_succeeded")],
    );
    let by_change = [(login4, "login_succeeded"), (changed, "password_changed")];
    assert_answer(
        &token_at(&app, &s4.access, after).await,
        "session_revoked",
        &by_change,
    );
    assert_answer(
        &token_at(&app, &s3.access, after).await,
        "valid",
        &[(login3, "login_succeeded")],
    );
    app.stop().await;
}

async fn a_compromised_rotation_kills_old_tokens_and_a_refresh_revives_the_session(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, s) = app.signup("fx-keys").await;
    let login = login_seq(&app, &s).await;
    let before = moment().await;
    let res = app
        .rotate_key(json!({ "compromised": true, "reason": "leaked" }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let rotation = res.body["seq"].as_i64().unwrap();
    let after = moment().await;
    assert_answer(
        &token_at(&app, &s.access, before).await,
        "valid",
        &[(login, "login_succeeded")],
    );
    let by_key = [(login, "login_succeeded"), (rotation, "key_rotated")];
    assert_answer(
        &token_at(&app, &s.access, after).await,
        "key_revoked",
        &by_key,
    );
    // Its only token is dead until it refreshes; the session is not.
    assert_answer(
        &session_at(&app, &s.session_id, after).await,
        "key_revoked",
        &by_key,
    );
    let r = app.refresh(&s.refresh).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let fresh = r.body["access_token"].as_str().unwrap().to_owned();
    let later = moment().await;
    assert_answer(
        &token_at(&app, &fresh, later).await,
        "valid",
        &[(login, "login_succeeded")],
    );
    assert_eq!(
        session_at(&app, &s.session_id, later).await["reason"],
        "valid"
    );
    assert_answer(
        &token_at(&app, &s.access, later).await,
        "key_revoked",
        &by_key,
    );
    // Judged by its claims: before its `iat` it did not exist.
    let issued = claim(&fresh, "iat") * 1000;
    assert_eq!(
        token_at(&app, &fresh, issued - 1).await["reason"],
        "not_yet_issued"
    );
    // A scheduled rotation leaves the previous key verifying.
    let res = app.rotate_key(json!({ "compromised": false })).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let scheduled = moment().await;
    assert_eq!(token_at(&app, &fresh, scheduled).await["reason"], "valid");
    app.stop().await;
}

async fn a_pruned_log_answers_only_for_what_it_still_covers(kind: Kind) {
    let (b, app) = start(kind).await;
    let (_, s) = app.signup("fx-pruned").await;
    // Retention's work, done by hand: the first key's creation is gone.
    exec(&b, "DELETE FROM events WHERE seq = 1").await;
    let oldest = events(&app, "").await[0].clone();
    assert_eq!(oldest["seq"], 2, "{oldest}");
    let res = ask(&app, json!({ "token": s.access }), at_ms(&oldest) - 1).await;
    assert_error(&res, 400, "invalid_request");
    let text = res.body["error_description"].as_str().unwrap();
    assert!(
        text.contains("at") && text.contains("no longer covers"),
        "{text}"
    );
    let res = ask(
        &app,
        json!({ "session_id": s.session_id }),
        at_ms(&oldest) - 1,
    )
    .await;
    assert_error(&res, 400, "invalid_request");
    // From the oldest event on it answers; the key's status comes from
    // its row, since the log no longer says how it began.
    let now = moment().await;
    assert_eq!(token_at(&app, &s.access, now).await["reason"], "valid");
    assert_eq!(
        token_at(&app, &s.access, at_ms(&oldest)).await["reason"],
        "not_yet_issued"
    );
    app.stop().await;
}

/// Retention may prune a lock's event while the lock is still in force
/// (and the revocations it carried): the users row still has the lock, and
/// the replay honours it for any time the log covers.
async fn a_lock_whose_event_was_pruned_still_decides(kind: Kind) {
    let (b, app) = start(kind).await;
    let (_, s) = app.signup("fx-pruned-lock").await;
    let locked = app
        .admin_user_action(&s.user_id, "lock", json!({ "reason": "forensics" }))
        .await;
    assert_eq!(locked.status, 200, "{}", locked.body);
    let lock_seq = locked.body["seq"].as_i64().unwrap();
    assert_eq!(
        token_at(&app, &s.access, moment().await).await["reason"],
        "user_locked"
    );
    // Everything up to the lock is gone, as retention would do it.
    let (_, other) = app.signup("fx-after").await;
    exec(&b, &format!("DELETE FROM events WHERE seq <= {lock_seq}")).await;
    let now = moment().await;
    assert_eq!(
        token_at(&app, &s.access, now).await["reason"],
        "user_locked"
    );
    assert_eq!(token_at(&app, &other.access, now).await["reason"], "valid");
    app.stop().await;
}
