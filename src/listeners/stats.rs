//! One listener's view of the metrics: the collectors it touches on every connection or request,
//! resolved to their label values once at start so the data path does no label lookups for them.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntGauge};

use crate::metrics::Metrics;

/// A listener's pre-resolved collectors.
pub struct ListenerStats {
    /// Listener name (the `listener` label).
    pub name: String,
    /// All collectors, for those with per-event labels.
    pub metrics: Arc<Metrics>,
    /// Connections accepted.
    pub connections: IntCounter,
    /// Connections open now.
    pub active: IntGauge,
    /// Bytes from clients.
    pub bytes_in: IntCounter,
    /// Bytes to clients.
    pub bytes_out: IntCounter,
    /// Request durations.
    pub duration: Option<Histogram>,
}

impl ListenerStats {
    /// Resolves the listener's collectors.
    pub fn new(name: &str, metrics: Arc<Metrics>, http: bool) -> Self {
        Self {
            name: name.to_owned(),
            connections: metrics.connections.with_label_values(&[name]),
            active: metrics.connections_active.with_label_values(&[name]),
            bytes_in: metrics.bytes.with_label_values(&[name, "in"]),
            bytes_out: metrics.bytes.with_label_values(&[name, "out"]),
            duration: http.then(|| metrics.request_duration.with_label_values(&[name])),
            metrics,
        }
    }

    /// Counts a new connection as open until the guard is dropped.
    pub fn open(&self) -> ActiveGuard<'_> {
        self.connections.inc();
        self.active.inc();
        ActiveGuard(self)
    }
}

/// An open connection; dropping it closes it in the counters.
pub struct ActiveGuard<'a>(&'a ListenerStats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.dec();
    }
}
