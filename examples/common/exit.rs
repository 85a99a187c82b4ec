//! How an example that checks something ends: its `run` on a two-thread
//! runtime, then exit 0 when every check held, 1 when one failed, 2 when
//! the run itself broke (the error printed under the example's name).
//! Imports only tokio and anyhow.

use std::future::Future;
use std::time::Duration;

/// Runs `run` and exits the process with its verdict.
pub fn exit_with(name: &str, run: impl Future<Output = anyhow::Result<bool>>) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = match rt.block_on(run) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("==> {name} FAILED: {e:#}");
            2
        }
    };
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}
