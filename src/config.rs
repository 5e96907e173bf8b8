//! The validated, typed configuration: what every later step (TLS stores, listeners, routes,
//! upstream peers) reads. Built only by `settings::load`; nothing downstream parses strings again.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything the proxy needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads per listener.
    pub threads: usize,
    /// Idle upstream connections each worker keeps for reuse (0 keeps none).
    pub upstream_keepalive: usize,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// How certificate files are watched and reloaded.
    pub reload: ReloadSettings,
    /// Where the admin listener binds, if enabled.
    pub admin: Option<SocketAddr>,
    /// The access log, if enabled.
    pub access_log: Option<AccessLogSettings>,
    /// Tracing filter from `[log] level` (`RUST_LOG` wins over it).
    pub log_level: Option<String>,
    /// Where development certificates are generated when absent (`[dev_certs]`).
    pub dev_certs_dir: Option<PathBuf>,
    /// Listeners, in file order.
    pub listeners: Vec<Listener>,
    /// Upstreams, in file order; routes refer to them by index.
    pub upstreams: Vec<Upstream>,
    /// Standalone mode (`SMQ_CLIENTS_STANDALONE_*`): only Clients routes, behind a bearer token.
    pub standalone: Option<Standalone>,
    /// What building the settings found worth telling the operator (insecure listeners,
    /// ignored variables), logged at start.
    pub notices: Vec<Notice>,
    /// Every effective setting with where it came from, for `check --print`.
    pub effective: Vec<Effective>,
}

/// A message from the settings build.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Warn (degraded or insecure) rather than inform.
    pub warn: bool,
    /// The message, naming the listener, upstream or variable.
    pub message: String,
}

/// One effective setting, for `check --print`. Secrets and inline PEM are never stored here.
#[derive(Debug, Clone)]
pub struct Effective {
    /// Dotted key, e.g. `listeners.users.tls.cert`.
    pub key: String,
    /// The value as printed.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `config.toml`.
    File,
    /// An `SMQ_*` variable.
    Env(String),
    /// Nobody set it.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => f.write_str("file"),
            Self::Env(var) => write!(f, "env {var}"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// Standalone mode: Clients runs with one user and no Users/Auth services.
#[derive(Debug, Clone)]
pub struct Standalone {
    /// The single user's e-mail.
    pub email: String,
    /// The token HTTP requests must carry.
    pub token: BearerToken,
}

/// A bearer token, kept only as its SHA-256 so it cannot reach a log line or a debug print.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// Keeps the digest of `token`.
    pub fn new(token: &str) -> Self {
        Self {
            digest: sha256(token.as_bytes()),
        }
    }

    /// Whether `presented` is the token. Comparing digests leaks nothing about the token through
    /// timing.
    pub fn matches(&self, presented: &[u8]) -> bool {
        sha256(presented) == self.digest
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// Access log settings (`[access_log]`).
#[derive(Debug, Clone)]
pub struct AccessLogSettings {
    /// JSON lines rather than text.
    pub json: bool,
    /// A file to append to; `None` is standard output.
    pub path: Option<PathBuf>,
}

/// Hot-reload settings (`[reload]`).
#[derive(Debug, Clone, Copy)]
pub struct ReloadSettings {
    /// Watch the files' directories for changes (inotify); off for filesystems without events.
    pub watch: bool,
    /// Periodic re-check, the safety net when an event is missed.
    pub interval: Duration,
    /// How long a key that does not match its certificate is given for its partner to arrive
    /// before it counts as a failure.
    pub settle: Duration,
}

/// One listening socket and its routes.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Unique name from the file.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// What it speaks.
    pub protocol: ListenerProtocol,
    /// Certificate and key paths; `None` means plaintext.
    pub tls: Option<TlsFiles>,
    /// Routes, first match wins. A `tcp` listener has exactly one, holding only the upstream.
    pub routes: Vec<Route>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2 (gRPC and WebSocket included), routed per request.
    Http,
    /// Raw bytes to one upstream (MQTT), closed after `idle_timeout` without traffic.
    Tcp {
        /// How long a connection may be silent in both directions.
        idle_timeout: Duration,
    },
}

/// The PEM sources of one identity (a listener's certificate, an upstream client certificate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// Chain: leaf first.
    pub cert: PemSource,
    /// Private key of the leaf.
    pub key: PemSource,
}

/// Where a PEM comes from: a file (re-read on reload) or inline text (fixed for the process).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PemSource {
    /// A file path.
    File {
        /// The path.
        path: PathBuf,
        /// The `SMQ_*` variable that named it, if any.
        var: Option<String>,
    },
    /// PEM text given inline.
    Inline {
        /// The PEM text.
        pem: Arc<str>,
        /// The variable or config key that held it.
        origin: String,
    },
}

impl PemSource {
    /// Reads a setting: a value that starts with `-----BEGIN` is inline PEM, anything else is a
    /// path. `origin` names the variable or key, `var` is set when it came from the environment.
    pub fn from_setting(value: &str, origin: &str, var: Option<&str>) -> Self {
        if value.trim_start().starts_with("-----BEGIN") {
            Self::Inline {
                pem: value.into(),
                origin: origin.to_owned(),
            }
        } else {
            Self::File {
                path: PathBuf::from(value),
                var: var.map(str::to_owned),
            }
        }
    }

    /// A file path from the config file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File {
            path: path.into(),
            var: None,
        }
    }

    /// The file path, if this is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File { path, .. } => Some(path),
            Self::Inline { .. } => None,
        }
    }
}

/// How the source is named in logs and errors: the path, the variable that named it, or where
/// the inline PEM was; never the PEM itself.
impl fmt::Display for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, var: None } => write!(f, "{}", path.display()),
            Self::File { path, var: Some(v) } => write!(f, "{} (from {v})", path.display()),
            Self::Inline { origin, .. } => write!(f, "{origin} (inline PEM)"),
        }
    }
}

// By hand: inline PEM may be a private key.
impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PemSource({self})")
    }
}

/// One routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Lower-cased host without port; `None` matches any host.
    pub host: Option<String>,
    /// Path prefix split into segments; `None` matches any path.
    pub path_prefix: Option<PathPrefix>,
    /// Remove the matched prefix before forwarding.
    pub strip_prefix: bool,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
}

/// A path prefix such as `/users` or `/*/clients`, where `*` stands for one whole segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix {
    /// The prefix as written, for logs.
    pub raw: String,
    /// Segments between slashes; `None` is a `*` wildcard.
    pub segments: Vec<Option<String>>,
    /// The prefix ended with `/`, so the path must continue past it.
    pub trailing_slash: bool,
}

/// Wire protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// Plaintext HTTP/2 with prior knowledge (gRPC servers).
    H2c,
    /// Raw TCP, for `tcp` listeners.
    Tcp,
}

/// One plaintext service behind the proxy.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Unique name from the file.
    pub name: String,
    /// Resolved socket address.
    pub address: SocketAddr,
    /// Wire protocol.
    pub protocol: UpstreamProtocol,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for upstream data; `None` waits forever (long gRPC streams).
    pub read_timeout: Option<Duration>,
    /// Longest wait to write to the upstream.
    pub write_timeout: Option<Duration>,
    /// How long an unused pooled connection is kept.
    pub idle_timeout: Duration,
    /// Concurrent streams per h2c connection.
    pub max_h2_streams: usize,
    /// TLS towards the upstream; `None` is plaintext.
    pub tls: Option<UpstreamTls>,
    /// Send a PROXY protocol v2 header with the client's address on each new connection.
    pub proxy_protocol: bool,
}

/// How the proxy checks an upstream's certificate (the libpq/SuperMQ mode names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Encrypt, accept any certificate.
    Require,
    /// Encrypt and verify the chain against the CA bundle, not the name.
    VerifyCa,
    /// Encrypt and verify the chain and that the certificate names `sni`.
    VerifyFull,
}

/// TLS re-originated to an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// Verification mode.
    pub mode: TlsMode,
    /// CA bundle to verify against; required by the verifying modes.
    pub ca: Option<PemSource>,
    /// Server name sent as SNI and checked by `verify-full`; never empty.
    pub sni: String,
    /// Client certificate and key presented to the upstream (mutual TLS).
    pub client: Option<TlsFiles>,
}

impl PathPrefix {
    /// Parses a prefix such as `/users` or `/*/clients/`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let Some(rest) = raw.strip_prefix('/') else {
            return Err(format!("{raw:?} must start with '/'"));
        };
        let trailing_slash = rest.ends_with('/');
        let body = rest.strip_suffix('/').unwrap_or(rest);
        let segments = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/')
                .map(|s| match s {
                    "" => Err(format!("{raw:?} has an empty segment ('//')")),
                    "*" => Ok(None),
                    s if s.contains('*') => {
                        Err(format!("{raw:?}: '*' must stand alone as a whole segment"))
                    }
                    s => Ok(Some(s.to_owned())),
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            raw: raw.to_owned(),
            segments,
            trailing_slash,
        })
    }
}
