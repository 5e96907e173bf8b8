//! Each listener's sockets and its workers. A listener binds its address once per worker (waiting
//! a bounded time for an address another process still holds, as nginx retries `bind()` during a
//! restart) and runs one single-threaded pingora service per worker thread on its own socket, as
//! nginx runs one event loop per worker process: a connection, its upstream connections and their
//! pool stay on the thread that accepted it. (One pingora service with N threads spawns each
//! connection, h2 stream and pooled-connection watcher on a random thread; under load a perf
//! profile showed a third of the CPU in cross-thread wake-ups.)
//!
//! The workers' sockets share the address with `SO_REUSEPORT`, so the kernel spreads new
//! connections over them by a hash of the client's address, as nginx's `reuseport` and Envoy do.
//! On one socket shared by every worker, whichever worker woke first accepted the whole queue: in
//! a burst of 64 connections (h2load) one worker got all 64 while the other idled.

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::Service;

use super::ListenerError;

/// How long a listener waits for an address that is in use before the process gives up. Long
/// enough for a previous instance to release it, short enough that a port clash is reported at
/// once to whoever started the proxy.
pub const BIND_WAIT: Duration = Duration::from_secs(5);

/// How often the address is tried while waiting.
const BIND_RETRY: Duration = Duration::from_millis(100);

/// Binds every listener address once and releases it, so an address that can never be ours
/// (not local, privileged) is reported with the listener's name before anything starts. An
/// address in use is left to the workers, which wait for it while the admin listener is up.
pub fn check_binds<'a>(
    listeners: impl IntoIterator<Item = (&'a str, SocketAddr)>,
) -> Result<(), ListenerError> {
    for (name, addr) in listeners {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(listener = name, %addr, wait = ?BIND_WAIT, "address in use; waiting for it");
            }
            Err(error) => {
                return Err(ListenerError::Bind {
                    listener: name.to_owned(),
                    addr,
                    error,
                });
            }
        }
    }
    Ok(())
}

/// Which listeners hold their address, for `/readyz`.
pub struct Bindings {
    sockets: Vec<Arc<Socket>>,
}

impl Bindings {
    /// One socket per listener (name, address), each shared by `workers` workers.
    pub fn new(
        listeners: impl IntoIterator<Item = (String, SocketAddr)>,
        workers: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            sockets: listeners
                .into_iter()
                .map(|(listener, addr)| {
                    Arc::new(Socket {
                        listener,
                        addr,
                        workers,
                        unclaimed: tokio::sync::Mutex::new(None),
                        bound: AtomicBool::new(false),
                    })
                })
                .collect(),
        })
    }

    /// The socket of the listener called `name`.
    pub fn socket(&self, name: &str) -> Option<Arc<Socket>> {
        self.sockets.iter().find(|s| s.listener == name).cloned()
    }

    /// The names of the listeners that do not hold their address yet.
    pub fn unbound(&self) -> Vec<&str> {
        self.sockets
            .iter()
            .filter(|s| !s.bound.load(Ordering::Acquire))
            .map(|s| s.listener.as_str())
            .collect()
    }
}

/// A listener's sockets: bound by whichever worker starts first, one per worker.
pub struct Socket {
    listener: String,
    addr: SocketAddr,
    workers: usize,
    /// The sockets not yet taken by a worker; `None` until bound.
    unclaimed: tokio::sync::Mutex<Option<Vec<std::net::TcpListener>>>,
    bound: AtomicBool,
}

/// Pending connections each worker's socket queues, as pingora's own listeners ask for (the
/// kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 65535;

impl Socket {
    /// This worker's socket, binding the address first if no worker has.
    async fn take(&self) -> Result<std::net::TcpListener, ListenerError> {
        let mut unclaimed = self.unclaimed.lock().await;
        if unclaimed.is_none() {
            *unclaimed = Some(self.bind().await?);
            self.bound.store(true, Ordering::Release);
            tracing::info!(listener = %self.listener, addr = %self.addr, "listening");
        }
        unclaimed
            .as_mut()
            .and_then(Vec::pop)
            .ok_or_else(|| self.error(std::io::Error::other("more workers than sockets")))
    }

    /// Binds the address, waiting up to [`BIND_WAIT`] while another process holds it.
    async fn bind(&self) -> Result<Vec<std::net::TcpListener>, ListenerError> {
        let deadline = tokio::time::Instant::now() + BIND_WAIT;
        loop {
            match bind_group(self.addr, self.workers) {
                Ok(sockets) => return Ok(sockets),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(BIND_RETRY).await;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    fn error(&self, error: std::io::Error) -> ListenerError {
        ListenerError::Bind {
            listener: self.listener.clone(),
            addr: self.addr,
            error,
        }
    }
}

/// `count` listening sockets on `addr` with `SO_REUSEPORT`. A plain bind comes first and is
/// released: it fails while any other socket holds the address, so another process (even one
/// with `SO_REUSEPORT` of its own) is waited for and reported, never silently joined.
fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    drop(std::net::TcpListener::bind(addr)?);
    let first = reuseport_listener(addr)?;
    // With port 0 the first socket's port is the one the others must share.
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(reuseport_listener(addr)?);
    }
    Ok(sockets)
}

/// One non-blocking (as tokio needs) listening socket on `addr` in a `SO_REUSEPORT` group.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket as RawSocket, Type};
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// One worker of a listener: takes its socket (one of the listener's) and runs its pingora
/// service on it (pingora adopts a socket found in the listening-fd table it is given, as it does
/// on a graceful upgrade). Ends the process if the address cannot be had or the service fails
/// while starting, where pingora would panic in the service thread and leave a live process with
/// a dead listener.
pub struct Worker<S> {
    /// The listener's sockets.
    pub socket: Arc<Socket>,
    /// The pingora service, with one thread.
    pub inner: S,
}

#[async_trait]
impl<S: Service> Service for Worker<S> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let listener = &self.socket.listener;
        let socket = match self.socket.take().await {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!("{e} (waited up to {BIND_WAIT:?}); exiting");
                std::process::exit(crate::EXIT_USAGE.into());
            }
        };
        // The table is this worker's own, so pingora's listener owns (and closes) this socket only.
        let mut table = Fds::new();
        table.add(self.socket.addr.to_string(), socket.into_raw_fd());
        let table: ListenFds = Arc::new(parking_lot::Mutex::new(table));
        let started = std::panic::AssertUnwindSafe(self.inner.start_service(
            Some(table),
            shutdown,
            listeners_per_fd,
        ))
        .catch_unwind()
        .await;
        if started.is_err() {
            tracing::error!(listener = %listener, "listener failed to start; exiting");
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_never_joins_another_holder() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert!(group.iter().all(|s| s.local_addr().unwrap() == addr));
        // A second instance's group, SO_REUSEPORT and all, is told the address is in use.
        let err = bind_group(addr, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
