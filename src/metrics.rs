//! Every Prometheus collector the proxy keeps, in one registry, named by Prometheus conventions
//! (`smq_edge_` prefix, base units, `_total` counters, `_seconds` histograms). Label values come
//! from the config (listener, route, upstream, store names) or from small fixed sets (method and
//! status classes, TLS versions), never from client input such as SNI, Host or path.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Request duration buckets suited to a proxy: 0.5 ms … 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The collectors, shared by every listener and the reloader.
pub struct Metrics {
    registry: Registry,
    /// Requests by listener, route, method class and status class.
    pub requests: IntCounterVec,
    /// Request duration by listener.
    pub request_duration: HistogramVec,
    /// gRPC requests by listener and `grpc-status`.
    pub grpc_requests: IntCounterVec,
    /// Connections accepted by listener.
    pub connections: IntCounterVec,
    /// Connections open now by listener.
    pub connections_active: IntGaugeVec,
    /// Completed TLS handshakes by listener, protocol version and ALPN.
    pub handshakes: IntCounterVec,
    /// Failed TLS handshakes by listener and reason.
    pub handshake_failures: IntCounterVec,
    /// Failures to reach an upstream, by upstream and kind (`connect`, `tls_verify`, `other`).
    pub upstream_errors: IntCounterVec,
    /// Bytes by listener and direction (`in` from clients, `out` to clients).
    pub bytes: IntCounterVec,
    /// Each certificate's `not_after`, Unix time, by store.
    pub certificate_not_after: IntGaugeVec,
    /// Reload attempts by store and result (`applied`, `failed`).
    pub reloads: IntCounterVec,
    /// Unix time of the last successful reload, by store.
    pub last_reload: IntGaugeVec,
}

impl Metrics {
    /// Registers every collector. Fails only on a programming error (a duplicate name).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "smq_edge_request_duration_seconds",
                "Time from request start to the end of the response.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["listener"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let build_info = gauge(
            "smq_edge_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Self {
            requests: counter(
                "smq_edge_requests_total",
                "HTTP requests answered.",
                &["listener", "route", "method", "status"],
            )?,
            request_duration,
            grpc_requests: counter(
                "smq_edge_grpc_requests_total",
                "gRPC requests by grpc-status.",
                &["listener", "grpc_status"],
            )?,
            connections: counter(
                "smq_edge_connections_total",
                "Downstream connections accepted.",
                &["listener"],
            )?,
            connections_active: gauge(
                "smq_edge_connections_active",
                "Downstream connections open now.",
                &["listener"],
            )?,
            handshakes: counter(
                "smq_edge_tls_handshakes_total",
                "Completed downstream TLS handshakes.",
                &["listener", "version", "alpn"],
            )?,
            handshake_failures: counter(
                "smq_edge_tls_handshake_failures_total",
                "Failed downstream TLS handshakes.",
                &["listener", "reason"],
            )?,
            upstream_errors: counter(
                "smq_edge_upstream_errors_total",
                "Failures to reach an upstream.",
                &["upstream", "kind"],
            )?,
            bytes: counter(
                "smq_edge_bytes_total",
                "Bytes exchanged with clients.",
                &["listener", "direction"],
            )?,
            certificate_not_after: gauge(
                "smq_edge_certificate_not_after_seconds",
                "Expiry of each loaded certificate, Unix time.",
                &["store"],
            )?,
            reloads: counter(
                "smq_edge_reloads_total",
                "Certificate reload attempts that found changed files.",
                &["store", "result"],
            )?,
            last_reload: gauge(
                "smq_edge_last_reload_timestamp_seconds",
                "Unix time the store's material was last loaded successfully (start-up or reload).",
                &["store"],
            )?,
            registry,
        })
    }

    /// The Prometheus text exposition of every collector.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The TLS version as operators write it (`TLSv1.3`), from rustls' name (`TLSv1_3`).
pub fn tls_version(raw: &str) -> &'static str {
    match raw {
        "TLSv1_3" | "TLSv1.3" => "TLSv1.3",
        "TLSv1_2" | "TLSv1.2" => "TLSv1.2",
        _ => "other",
    }
}

/// `2xx`-style class of an HTTP status (`0` when no response was written).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

/// The method, or `other` for anything outside the standard set (keeps label values bounded).
pub fn method_class(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(0), "none");
        assert_eq!(
            method_class(&http::Method::from_bytes(b"BREW").unwrap()),
            "other"
        );
    }

    #[test]
    fn render_has_build_info() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("smq_edge_build_info{version=\""), "{text}");
    }
}
