//! In-process TCP proxies (after `Proxy` in tests/api/fleet.rs): each
//! instance reaches PostgreSQL and Redis through its own, so the chaos
//! driver can cut one instance off. `Cut` refuses new connections and
//! drops the open ones; `BlackHole` accepts new connections and holds them
//! without forwarding anything, and stalls the open ones, until `Open`
//! again (then everything held flows on). The sidecars reach the instances
//! through proxies too, which only follow an instance to its new port
//! after a restart (a stable service address, as a load balancer gives).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Open,
    Cut,
    BlackHole,
}

pub struct Proxy {
    pub port: u16,
    upstream_port: Arc<AtomicU16>,
    mode: watch::Sender<Mode>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

/// Bytes a held connection may buffer before it is dropped.
const HELD_MAX: usize = 1 << 20;

impl Proxy {
    /// A proxy on 127.0.0.1 to 127.0.0.1:`upstream_port`.
    pub async fn new(upstream_port: u16) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let upstream = Arc::new(AtomicU16::new(upstream_port));
        let (mode, _) = watch::channel(Mode::Open);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (upstream, rx, conns) = (upstream.clone(), mode.subscribe(), conns.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if *rx.borrow() == Mode::Cut {
                        drop(inbound);
                        continue;
                    }
                    let _ = inbound.set_nodelay(true);
                    let task = tokio::spawn(serve(inbound, upstream.clone(), rx.clone()));
                    let mut conns = conns.lock();
                    conns.retain(|c| !c.is_finished());
                    conns.push(task);
                }
            })
        };
        Ok(Proxy {
            port,
            upstream_port: upstream,
            mode,
            conns,
            accept,
        })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
        if mode == Mode::Cut {
            for c in self.conns.lock().drain(..) {
                c.abort();
            }
        }
    }

    /// Where new connections go from now on.
    pub fn retarget(&self, upstream_port: u16) {
        self.upstream_port.store(upstream_port, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }
}

async fn serve(mut inbound: TcpStream, upstream: Arc<AtomicU16>, mut mode: watch::Receiver<Mode>) {
    // Held while black-holed: read what the client sends (so a client that
    // gives up is noticed) but forward nothing.
    let mut held = Vec::new();
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Cut => return,
            Mode::Open => break,
            Mode::BlackHole => {
                let mut buf = [0u8; 4096];
                tokio::select! {
                    r = inbound.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(n) if held.len() + n > HELD_MAX => return,
                        Ok(n) => held.extend_from_slice(&buf[..n]),
                    },
                    c = mode.changed() => if c.is_err() { return },
                }
            }
        }
    }
    let port = upstream.load(Ordering::SeqCst);
    let Ok(mut out) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let _ = out.set_nodelay(true);
    if !held.is_empty() && out.write_all(&held).await.is_err() {
        return;
    }
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = out.into_split();
    tokio::join!(pump(ri, wo, mode.clone()), pump(ro, wi, mode));
}

/// Waits until the proxy is open; false once it is cut.
async fn flowing(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let now = *mode.borrow_and_update();
        match now {
            Mode::Open => return true,
            Mode::Cut => return false,
            Mode::BlackHole => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Copies one direction, stalling (reading nothing more, writing nothing)
/// while black-holed.
async fn pump(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !flowing(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            res = r.read(&mut buf) => match res {
                Ok(0) | Err(_) => {
                    let _ = w.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            c = mode.changed() => {
                if c.is_err() {
                    return;
                }
                continue;
            }
        };
        if !flowing(&mut mode).await {
            return;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
