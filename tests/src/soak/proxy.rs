//! A TCP proxy in front of PostgreSQL that the soak can cut: for one service the database
//! becomes unreachable (open connections reset, new ones refused) and then comes back, as in
//! a network partition between the service and its database.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy to `target` on a free port of `bind` (loopback, or the host's veth address
    /// when a service in a network namespace must reach it).
    pub async fn start(bind: IpAddr, target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((bind, 0)).await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (task_up, task_refused, task_connections) =
            (up.clone(), refused.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !task_up.load(Ordering::SeqCst) {
                    task_refused.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut open = task_connections.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|c| !c.is_finished());
                open.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy {
            addr,
            up,
            refused,
            connections,
            accept,
        })
    }

    /// Reset every open connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        for c in open.drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connection attempts refused while cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The `host:port` of a postgres URL, resolved.
pub fn pg_socket(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host_port = url.split('@').nth(1)?.split('/').next()?;
    host_port.to_socket_addrs().ok()?.next()
}
