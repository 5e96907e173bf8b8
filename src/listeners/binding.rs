//! Getting each listener's address: wait a bounded time for an address another process still
//! holds (as nginx retries `bind()` during a restart), let pingora bind it, end the process if
//! that fails, and report which listeners are bound for `/readyz`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;

use super::ListenerError;

/// How long a listener waits for an address that is in use before the process gives up. Long
/// enough for a previous instance to release it, short enough that a port clash is reported at
/// once to whoever started the proxy.
pub const BIND_WAIT: Duration = Duration::from_secs(5);

/// How often the address is tried while waiting.
const BIND_RETRY: Duration = Duration::from_millis(100);

/// Which listeners hold their address. Pingora records every socket it binds in the process's
/// listening-fd table (the one it hands over on upgrade), so a listener is bound exactly when its
/// address is in that table.
pub struct Bindings {
    /// The table, once the first listener service has started.
    table: OnceLock<ListenFds>,
    /// Each listener's name and address as given to pingora (the table's key).
    listeners: Vec<(String, String)>,
}

impl Bindings {
    /// Tracks `listeners` (name, address).
    pub fn new(listeners: impl IntoIterator<Item = (String, SocketAddr)>) -> Arc<Self> {
        Arc::new(Self {
            table: OnceLock::new(),
            listeners: listeners
                .into_iter()
                .map(|(name, addr)| (name, addr.to_string()))
                .collect(),
        })
    }

    /// The names of the listeners that do not hold their address yet.
    pub fn unbound(&self) -> Vec<&str> {
        let table = self.table.get().map(|t| t.lock());
        self.listeners
            .iter()
            .filter(|(_, addr)| table.as_ref().is_none_or(|t| t.get(addr).is_none()))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Binds every listener address once and releases it, so an address that can never be ours
/// (not local, privileged) is reported with the listener's name before anything starts. An
/// address in use is left to [`Listening`], which waits for it while the admin listener is up.
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

/// Runs a listener's pingora service: waits up to [`BIND_WAIT`] for its address, and ends the
/// process if it cannot get it or the service fails while starting. Pingora would retry a busy
/// address for 30 s and then panic in the service thread, leaving a live process with a dead
/// listener.
pub struct Listening<S> {
    /// Listener name.
    pub listener: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Shared with `/readyz`.
    pub bindings: Arc<Bindings>,
    /// The pingora service.
    pub inner: S,
}

impl<S> Listening<S> {
    async fn wait_for_address(&self) -> Result<(), ListenerError> {
        let deadline = tokio::time::Instant::now() + BIND_WAIT;
        loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(BIND_RETRY).await;
                }
                Err(error) => {
                    return Err(ListenerError::Bind {
                        listener: self.listener.clone(),
                        addr: self.addr,
                        error,
                    });
                }
            }
        }
    }
}

#[async_trait]
impl<S: Service> Service for Listening<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(table) = &fds {
            let _ = self.bindings.table.set(table.clone());
        }
        if let Err(e) = self.wait_for_address().await {
            tracing::error!("{e} (waited {BIND_WAIT:?}); exiting");
            std::process::exit(crate::EXIT_USAGE.into());
        }
        let started =
            std::panic::AssertUnwindSafe(self.inner.start_service(fds, shutdown, listeners_per_fd))
                .catch_unwind()
                .await;
        if started.is_err() {
            tracing::error!(listener = %self.listener, "listener failed to start; exiting");
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }
}
