//! Per-request accounting, at the end of each request: the request metrics, and one access log
//! line (JSON or text) written through a non-blocking writer, so a slow disk or terminal never
//! holds up a request (lines are dropped, not waited for, if the writer falls far behind).

use std::io::Write;
use std::time::{Instant, SystemTime};

use pingora::Error;
use pingora::proxy::Session;

use crate::listeners::stats::ListenerStats;
use crate::metrics::{method_class, status_class};

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// One human-readable line.
    Text,
}

/// Where access log lines go.
#[derive(Clone)]
pub struct AccessLog {
    format: Format,
    writer: tracing_appender::non_blocking::NonBlocking,
}

impl AccessLog {
    /// An access log in `format` writing through `writer`.
    pub fn new(format: Format, writer: tracing_appender::non_blocking::NonBlocking) -> Self {
        Self { format, writer }
    }

    fn write(&self, line: String) {
        let mut writer = self.writer.clone();
        // The non-blocking writer only queues the line; a full queue drops it rather than wait.
        let _ = writer.write_all(line.as_bytes());
    }
}

/// What the request path decided, for the log line.
pub struct RequestView<'a> {
    /// The route's label: its path prefix, host, or `*`.
    pub route: &'a str,
    /// The upstream's name, if a route was chosen.
    pub upstream: Option<&'a str>,
    /// When the request started.
    pub started: Instant,
    /// SNI of the connection, if it was TLS with SNI.
    pub sni: Option<String>,
    /// `grpc-status` from the response trailers, for streamed gRPC answers.
    pub grpc_status: Option<String>,
}

/// Records a finished request in the metrics and the access log.
pub fn record(
    stats: &ListenerStats,
    log: Option<&AccessLog>,
    session: &Session,
    error: Option<&Error>,
    view: RequestView<'_>,
) {
    let elapsed = view.started.elapsed();
    let req = session.req_header();
    let response = session.response_written();
    let status = response.map_or(0, |r| r.status.as_u16());
    // Streamed gRPC answers carry grpc-status in trailers; trailers-only ones in the headers.
    let grpc_status = view.grpc_status.clone().or_else(|| {
        response
            .and_then(|r| r.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let is_grpc = crate::respond::is_grpc(session);
    let bytes_in = session.as_downstream().body_bytes_read() as u64;
    let bytes_out = session.as_downstream().body_bytes_sent() as u64;

    let m = &stats.metrics;
    m.requests
        .with_label_values(&[
            stats.name.as_str(),
            view.route,
            method_class(&req.method),
            status_class(status),
        ])
        .inc();
    if let Some(duration) = &stats.duration {
        duration.observe(elapsed.as_secs_f64());
    }
    stats.bytes_in.inc_by(bytes_in);
    stats.bytes_out.inc_by(bytes_out);
    if is_grpc {
        // A gRPC request without any grpc-status (the stream was cut) counts as "none".
        let code = grpc_status.as_deref().unwrap_or("none");
        m.grpc_requests
            .with_label_values(&[stats.name.as_str(), code])
            .inc();
    }

    let Some(log) = log else { return };
    let digest = session.digest();
    let client = session
        .client_addr()
        .map(ToString::to_string)
        .unwrap_or_default();
    let tls_version = digest
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|s| crate::metrics::tls_version(&s.version));
    let alpn = match (tls_version.is_some(), session.is_http2()) {
        (_, true) if tls_version.is_none() => Some("h2c"),
        (true, true) => Some("h2"),
        (true, false) => Some("http/1.1"),
        (false, _) => None,
    };
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let path = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path().to_owned(), |p| p.to_string());
    let line = match log.format {
        Format::Json => {
            let mut obj = serde_json::json!({
                "time": time,
                "client": client,
                "listener": stats.name,
                "sni": view.sni,
                "tls_version": tls_version,
                "alpn": alpn,
                "method": req.method.as_str(),
                "path": path,
                "status": status,
                "grpc_status": grpc_status,
                "upstream": view.upstream,
                "route": view.route,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_seconds": elapsed.as_secs_f64(),
            });
            if let (Some(e), Some(map)) = (error, obj.as_object_mut()) {
                map.insert(
                    "error".into(),
                    serde_json::Value::String(e.etype().as_str().to_owned()),
                );
            }
            format!("{obj}\n")
        }
        Format::Text => format!(
            "{time} {client} {listener} sni={sni} {tls} {alpn} \"{method} {path}\" {status} grpc={grpc} upstream={upstream} in={bytes_in} out={bytes_out} {secs:.6}s\n",
            listener = stats.name,
            sni = view.sni.as_deref().unwrap_or("-"),
            tls = tls_version.unwrap_or("-"),
            alpn = alpn.unwrap_or("-"),
            method = req.method,
            grpc = grpc_status.as_deref().unwrap_or("-"),
            upstream = view.upstream.unwrap_or("-"),
            secs = elapsed.as_secs_f64(),
        ),
    };
    log.write(line);
}

/// What one tcp session did, for its access log line.
pub struct SessionView<'a> {
    /// The upstream's name.
    pub upstream: &'a str,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
    /// How the session ended (`closed`, `reset`, `idle timeout`, `shutdown`, `upstream refused`).
    pub outcome: &'a str,
    /// Bytes from and to the client.
    pub bytes: (u64, u64),
    /// When the session started.
    pub started: Instant,
    /// SNI, TLS version and ALPN of the client's connection, if it was TLS.
    pub tls: Option<&'a SessionTls>,
}

/// The TLS side of a tcp session, for its log line.
pub struct SessionTls {
    /// Server name the client asked for.
    pub sni: Option<String>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// Negotiated ALPN protocol, or `none`.
    pub alpn: &'static str,
}

/// Writes the access log line of a finished tcp session.
pub fn record_session(stats: &ListenerStats, log: Option<&AccessLog>, view: SessionView<'_>) {
    let Some(log) = log else { return };
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let client = view.client.map(|c| c.to_string()).unwrap_or_default();
    let secs = view.started.elapsed().as_secs_f64();
    let line = match log.format {
        Format::Json => format!(
            "{}\n",
            serde_json::json!({
                "time": time,
                "client": client,
                "listener": stats.name,
                "protocol": "tcp",
                "sni": view.tls.and_then(|t| t.sni.as_deref()),
                "tls_version": view.tls.map(|t| t.version),
                "alpn": view.tls.map(|t| t.alpn),
                "upstream": view.upstream,
                "outcome": view.outcome,
                "bytes_in": view.bytes.0,
                "bytes_out": view.bytes.1,
                "duration_seconds": secs,
            })
        ),
        Format::Text => format!(
            "{time} {client} {} sni={} {} {} tcp upstream={} {} in={} out={} {secs:.6}s\n",
            stats.name,
            view.tls.and_then(|t| t.sni.as_deref()).unwrap_or("-"),
            view.tls.map_or("-", |t| t.version),
            view.tls.map_or("-", |t| t.alpn),
            view.upstream,
            view.outcome,
            view.bytes.0,
            view.bytes.1
        ),
    };
    log.write(line);
}
