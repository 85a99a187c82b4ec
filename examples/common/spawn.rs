//! The port a child process (`recall serve`, `recall verifier`) says it
//! listens on: its stdout's line `<prefix><port>`. Imports only tokio.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The port from `child`'s first stdout line starting with `prefix`,
/// if one comes within `within`. The rest of its stdout is read and
/// dropped, so the child never blocks on a full pipe.
pub async fn announced_port(child: &mut Child, prefix: &str, within: Duration) -> Option<u16> {
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let port = tokio::time::timeout(within, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(p) = line.strip_prefix(prefix) {
                return p.trim().parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}
