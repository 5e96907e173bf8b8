//! Serde mirror of `config.toml`: the file's shape and nothing else. Unknown keys are rejected so a
//! typo is an error, not a silently ignored setting. Checking and typing happen in `settings::build`.

use serde::Deserialize;

/// The whole `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Certificate hot-reload.
    #[serde(default)]
    pub reload: ReloadSection,
    /// The admin listener (metrics, health, certificate inventory); absent means none.
    pub admin: Option<AdminSection>,
    /// The per-request access log.
    #[serde(default)]
    pub access_log: AccessLogSection,
    /// Process logging.
    #[serde(default)]
    pub log: LogSection,
    /// Development certificate generation; absent in production configs.
    pub dev_certs: Option<DevCertsSection>,
    /// Ports the proxy listens on.
    #[serde(default)]
    pub listeners: Vec<ListenerSection>,
    /// Plaintext services the proxy forwards to.
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Worker threads per listener.
    pub threads: Option<usize>,
    /// Idle upstream connections each worker keeps for reuse.
    pub upstream_keepalive: Option<usize>,
    /// How long in-flight requests may run after SIGTERM/SIGINT, e.g. `"10s"`.
    pub shutdown_grace: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener, default `127.0.0.1:9901`.
    pub listen: Option<String>,
}

/// `[access_log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// Write one line per request and per tcp session.
    pub enabled: Option<bool>,
    /// `text` or `json`.
    pub format: Option<String>,
    /// A file to append to, or `-` for standard output.
    pub path: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter such as `info` or `info,smq_edge=debug`; `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// `[reload]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    /// Watch the files' directories for changes.
    pub watch: Option<bool>,
    /// Periodic re-check interval, e.g. `"30s"`.
    pub interval: Option<String>,
    /// How long a half-replaced certificate/key pair may take to settle, e.g. `"10s"`.
    pub settle: Option<String>,
}

/// `[dev_certs]`: where development certificates are created when absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevCertsSection {
    /// Directory that holds (or will hold) `ca.crt`, `server.crt` and `server.key`.
    pub dir: String,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Unique name, used in logs and for `SMQ_<NAME>_*` settings.
    pub name: String,
    /// Socket address, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// `http` (HTTP/1.1 and HTTP/2, gRPC included) or `tcp` (raw bytes, e.g. MQTT).
    pub protocol: Option<String>,
    /// `tcp` listeners: how long a silent connection is kept, e.g. `"1h"`.
    pub idle_timeout: Option<String>,
    /// Certificate and key; absent means plaintext.
    pub tls: Option<ListenerTlsSection>,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
}

/// `[listeners.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSection {
    /// PEM file: leaf certificate first, then intermediates.
    pub cert: String,
    /// PEM file: the leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// One `[[listeners.routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Host the request must name (port ignored); absent matches any.
    pub host: Option<String>,
    /// Path prefix; `*` stands for exactly one path segment.
    pub path_prefix: Option<String>,
    /// Remove the matched prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Name of an `[[upstreams]]` entry.
    pub upstream: String,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Unique name referenced by routes.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `http1`, `h2c` or `tcp`.
    pub protocol: Option<String>,
    /// `"v2"` to send a PROXY protocol v2 header with the client's address.
    pub proxy_protocol: Option<String>,
    /// TCP connect timeout, e.g. `"3s"`.
    pub connect_timeout: Option<String>,
    /// Longest wait for upstream data; `"0s"` disables it.
    pub read_timeout: Option<String>,
    /// Longest wait to write to the upstream; `"0s"` disables it.
    pub write_timeout: Option<String>,
    /// How long an unused pooled connection is kept.
    pub idle_timeout: Option<String>,
    /// Concurrent streams per h2c connection before another is opened.
    pub max_h2_streams: Option<usize>,
    /// TLS towards the upstream.
    pub tls: Option<UpstreamTlsSection>,
}

/// `[upstreams.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// `disable`, `require`, `verify-ca` or `verify-full` (also `disabled`, `required`).
    pub mode: Option<String>,
    /// CA bundle (PEM) to verify the upstream against.
    pub ca: Option<String>,
    /// Name to send as SNI and to verify; defaults to the host part of `address`.
    pub sni: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub cert: Option<String>,
    /// Client key (PEM) for mutual TLS.
    pub key: Option<String>,
}
