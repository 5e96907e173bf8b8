//! Per-listener connection and byte counters, written on the data path with relaxed atomics and
//! read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted (tcp listeners) or requests served (http listeners).
    pub accepted: AtomicU64,
    /// Connections open now (tcp listeners).
    pub active: AtomicU64,
    /// Bytes received from clients.
    pub bytes_in: AtomicU64,
    /// Bytes sent to clients.
    pub bytes_out: AtomicU64,
}

impl ListenerStats {
    /// Counts a new connection as open until the guard is dropped.
    pub fn open(&self) -> ActiveGuard<'_> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self)
    }
}

/// An open connection; dropping it closes it in the counters.
#[derive(Debug)]
pub struct ActiveGuard<'a>(&'a ListenerStats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
