//! Followers whose clients vanish (G11): SSE streams of the revocation
//! feed and of the audit log whose connections are reset leave nothing
//! open behind them (`recall_event_followers` goes back to where it was).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::feed::create_service;
use crate::fixtures::start;
use crate::helpers::{eventually, Kind, TestApp, ADMIN_TOKEN};

/// Opens an SSE stream and waits for its first bytes.
async fn open_stream(app: &TestApp, path: &str, token: &str) -> TcpStream {
    let mut conn = TcpStream::connect(("127.0.0.1", app.running.port))
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut first = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut first))
        .await
        .expect("the stream answered")
        .unwrap();
    let head = String::from_utf8_lossy(&first[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    conn
}

async fn vanished_stream_clients_leave_nothing_open(kind: Kind) {
    let (_b, app) = start(kind).await;
    let (_, service) = create_service(&app, "vanishing").await;
    let before = app.metric("recall_event_followers").await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(open_stream(&app, "/v1/revocations/stream", &service).await);
        streams.push(open_stream(&app, "/v1/admin/events/stream", ADMIN_TOKEN).await);
    }
    let open = app.metric("recall_event_followers").await;
    assert_eq!(open, before + 20.0, "every stream follows");
    for conn in streams {
        // Linger 0: the close is an RST, as from a client that died.
        let _ = conn.set_zero_linger();
        drop(conn);
    }
    let closed = eventually(Duration::from_secs(40), || async {
        app.metric("recall_event_followers").await == before
    })
    .await;
    let left = app.metric("recall_event_followers").await;
    assert!(
        closed.is_some(),
        "{} followers left open by vanished clients",
        left - before
    );
    println!("vanished followers closed after {closed:?}");
    app.stop().await;
}

crate::both_stores!(vanished_stream_clients_leave_nothing_open);
