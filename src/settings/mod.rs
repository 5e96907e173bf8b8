//! Settings → `Config`: the one place that reads `config.toml`, applies defaults and checks every
//! value, naming the offending key (`listeners.https.listen`) so an operator can fix it.
//!
//! Pipeline: `config.toml` → [`file::FileConfig`] (serde mirror) → [`build`] → [`Config`].
//! Precedence today is file > default; `SMQ_*` environment overrides arrive with issue #4.

pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    Config, Listener, PathPrefix, PemSource, ReloadSettings, Route, TlsFiles, TlsMode, Upstream,
    UpstreamProtocol, UpstreamTls,
};
use file::{FileConfig, ListenerSection, RouteSection, UpstreamSection, UpstreamTlsSection};

/// Default worker threads per listener.
pub const DEFAULT_THREADS: usize = 2;
/// Default drain time after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default periodic certificate re-check.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a half-replaced certificate/key pair may take to settle.
pub const DEFAULT_RELOAD_SETTLE: Duration = Duration::from_secs(10);
/// Default upstream connect timeout: short, so a dead upstream gives a quick 502.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default upstream read timeout for `http1` upstreams (nginx's `proxy_read_timeout`).
pub const DEFAULT_HTTP1_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default upstream write timeout.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default idle time of a pooled upstream connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default concurrent streams per h2c upstream connection (pingora's own default is 1).
pub const DEFAULT_MAX_H2_STREAMS: usize = 100;

/// One problem found in the settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid TOML or has the wrong shape.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A value is present but wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted key, e.g. `listeners.https.listen`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// Every problem found, so `check` can list them all at once.
#[derive(Debug)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsErrors {}

/// Reads and checks the config file. Relative paths in it are taken relative to the current
/// directory, as operators expect from `--config` on the command line.
pub fn load(path: &Path) -> Result<Config, SettingsErrors> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        SettingsErrors(vec![SettingsError::Read {
            path: path.to_owned(),
            error,
        }])
    })?;
    let file = parse(&text).map_err(|message| {
        SettingsErrors(vec![SettingsError::Parse {
            path: path.to_owned(),
            message,
        }])
    })?;
    build(file)
}

/// Parses TOML text into the file mirror. The error names the key (`server.threads`) and the
/// line and column, on one line.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let located = |e: &toml::de::Error| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {column})")
        });
        format!("{}{}", e.message().trim_end(), at.unwrap_or_default())
    };
    let de = toml::Deserializer::parse(text).map_err(|e| located(&e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = located(e.inner());
        if key == "." || key.is_empty() {
            inner
        } else {
            format!("{key}: {inner}")
        }
    })
}

/// Turns the file's raw values into a checked [`Config`], collecting every error.
pub fn build(file: FileConfig) -> Result<Config, SettingsErrors> {
    let mut errs = Vec::new();
    let threads = match file.server.threads {
        Some(0) => {
            errs.push(invalid("server.threads", "must be at least 1"));
            DEFAULT_THREADS
        }
        Some(n) => n,
        None => DEFAULT_THREADS,
    };
    let shutdown_grace = duration(
        &mut errs,
        "server.shutdown_grace",
        file.server.shutdown_grace.as_deref(),
    )
    .unwrap_or(DEFAULT_SHUTDOWN_GRACE);

    let reload = ReloadSettings {
        watch: file.reload.watch.unwrap_or(true),
        interval: duration(
            &mut errs,
            "reload.interval",
            file.reload.interval.as_deref(),
        )
        .unwrap_or(DEFAULT_RELOAD_INTERVAL),
        settle: duration(&mut errs, "reload.settle", file.reload.settle.as_deref())
            .unwrap_or(DEFAULT_RELOAD_SETTLE),
    };
    if reload.interval.is_zero() {
        errs.push(invalid("reload.interval", "must be longer than 0s"));
    }

    let mut upstreams = Vec::new();
    let mut upstream_index = HashMap::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let key = section_key("upstreams", i, &u.name);
        if upstream_index
            .insert(u.name.clone(), upstreams.len())
            .is_some()
        {
            errs.push(invalid(
                format!("{key}.name"),
                format!("duplicate upstream name {:?}", u.name),
            ));
        }
        if let Some(up) = build_upstream(&mut errs, &key, u) {
            upstreams.push(up);
        } else {
            upstream_index.remove(&u.name);
        }
    }

    let mut listeners = Vec::new();
    let mut names = HashMap::new();
    for (i, l) in file.listeners.iter().enumerate() {
        let key = section_key("listeners", i, &l.name);
        if names.insert(l.name.clone(), ()).is_some() {
            errs.push(invalid(
                format!("{key}.name"),
                format!("duplicate listener name {:?}", l.name),
            ));
        }
        if let Some(listener) = build_listener(&mut errs, &key, l, &upstream_index) {
            listeners.push(listener);
        }
    }
    if file.listeners.is_empty() {
        errs.push(invalid(
            "listeners",
            "at least one [[listeners]] entry is needed",
        ));
    }
    let mut seen = HashMap::new();
    for l in &listeners {
        if let Some(other) = seen.insert(l.listen, l.name.clone()) {
            errs.push(invalid(
                format!("listeners.{}.listen", l.name),
                format!("{} is also used by listener {other:?}", l.listen),
            ));
        }
    }

    if !errs.is_empty() {
        return Err(SettingsErrors(errs));
    }
    Ok(Config {
        threads,
        shutdown_grace,
        reload,
        dev_certs_dir: file.dev_certs.map(|d| PathBuf::from(d.dir)),
        listeners,
        upstreams,
    })
}

fn build_listener(
    errs: &mut Vec<SettingsError>,
    key: &str,
    l: &ListenerSection,
    upstreams: &HashMap<String, usize>,
) -> Option<Listener> {
    let start = errs.len();
    if l.name.is_empty() {
        errs.push(invalid(format!("{key}.name"), "must not be empty"));
    }
    let listen = match l.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(invalid(
                format!("{key}.listen"),
                format!("{:?} is not an IP:port socket address", l.listen),
            ));
            None
        }
    };
    match l.protocol.as_deref() {
        None | Some("http") => {}
        Some(other) => errs.push(invalid(
            format!("{key}.protocol"),
            format!("unknown protocol {other:?}; expected \"http\""),
        )),
    }
    let tls = l.tls.as_ref().map(|t| TlsFiles {
        cert: PemSource::from_setting(&t.cert, &format!("{key}.tls.cert"), None),
        key: PemSource::from_setting(&t.key, &format!("{key}.tls.key"), None),
    });
    if l.routes.is_empty() {
        errs.push(invalid(
            format!("{key}.routes"),
            "at least one [[listeners.routes]] entry is needed",
        ));
    }
    let routes: Vec<Route> = l
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| build_route(errs, &format!("{key}.routes[{i}]"), r, upstreams))
        .collect();
    if errs.len() > start {
        return None;
    }
    Some(Listener {
        name: l.name.clone(),
        listen: listen?,
        tls,
        routes,
    })
}

fn build_route(
    errs: &mut Vec<SettingsError>,
    key: &str,
    r: &RouteSection,
    upstreams: &HashMap<String, usize>,
) -> Option<Route> {
    let Some(&upstream) = upstreams.get(&r.upstream) else {
        errs.push(invalid(
            format!("{key}.upstream"),
            format!(
                "unknown upstream {:?}; define it in an [[upstreams]] entry",
                r.upstream
            ),
        ));
        return None;
    };
    let path_prefix = match r.path_prefix.as_deref().map(PathPrefix::parse) {
        Some(Err(message)) => {
            errs.push(invalid(format!("{key}.path_prefix"), message));
            return None;
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if r.strip_prefix && path_prefix.is_none() {
        errs.push(invalid(
            format!("{key}.strip_prefix"),
            "needs a path_prefix to strip",
        ));
        return None;
    }
    Some(Route {
        host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
        path_prefix,
        strip_prefix: r.strip_prefix,
        upstream,
    })
}

fn build_upstream(
    errs: &mut Vec<SettingsError>,
    key: &str,
    u: &UpstreamSection,
) -> Option<Upstream> {
    let start = errs.len();
    if u.name.is_empty() {
        errs.push(invalid(format!("{key}.name"), "must not be empty"));
    }
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(other) => {
            errs.push(invalid(
                format!("{key}.protocol"),
                format!("unknown protocol {other:?}; expected \"http1\" or \"h2c\""),
            ));
            UpstreamProtocol::Http1
        }
    };
    let address = match u.address.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => Some(a),
        Ok(None) | Err(_) => {
            errs.push(invalid(
                format!("{key}.address"),
                format!("{:?} is not a resolvable host:port", u.address),
            ));
            None
        }
    };
    let connect_timeout = duration(
        errs,
        &format!("{key}.connect_timeout"),
        u.connect_timeout.as_deref(),
    )
    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let default_read = match protocol {
        UpstreamProtocol::Http1 => Some(DEFAULT_HTTP1_READ_TIMEOUT),
        // gRPC streams may stay silent for a long time; a read timeout would cut them.
        UpstreamProtocol::H2c => None,
    };
    let read_timeout = optional_duration(
        errs,
        &format!("{key}.read_timeout"),
        u.read_timeout.as_deref(),
        default_read,
    );
    let write_timeout = optional_duration(
        errs,
        &format!("{key}.write_timeout"),
        u.write_timeout.as_deref(),
        Some(DEFAULT_WRITE_TIMEOUT),
    );
    let idle_timeout = duration(
        errs,
        &format!("{key}.idle_timeout"),
        u.idle_timeout.as_deref(),
    )
    .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let max_h2_streams = match u.max_h2_streams {
        Some(0) => {
            errs.push(invalid(
                format!("{key}.max_h2_streams"),
                "must be at least 1",
            ));
            DEFAULT_MAX_H2_STREAMS
        }
        Some(n) => n,
        None => DEFAULT_MAX_H2_STREAMS,
    };
    let tls = u
        .tls
        .as_ref()
        .and_then(|t| build_upstream_tls(errs, &format!("{key}.tls"), t, &u.address));
    if errs.len() > start {
        return None;
    }
    Some(Upstream {
        tls,
        name: u.name.clone(),
        address: address?,
        protocol,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        max_h2_streams,
    })
}

/// Parses a TLS mode as SuperMQ (libpq) spells it. `None` means `disable`.
pub fn parse_tls_mode(raw: &str) -> Result<Option<TlsMode>, String> {
    match raw {
        "disable" | "disabled" => Ok(None),
        "require" | "required" => Ok(Some(TlsMode::Require)),
        "verify-ca" => Ok(Some(TlsMode::VerifyCa)),
        "verify-full" => Ok(Some(TlsMode::VerifyFull)),
        other => Err(format!(
            "unknown TLS mode {other:?}; expected \"disable\", \"require\", \"verify-ca\" or \"verify-full\""
        )),
    }
}

/// `[upstreams.tls]` → `UpstreamTls`; `None` when the mode is `disable`.
fn build_upstream_tls(
    errs: &mut Vec<SettingsError>,
    key: &str,
    t: &UpstreamTlsSection,
    address: &str,
) -> Option<UpstreamTls> {
    let mode = match parse_tls_mode(t.mode.as_deref().unwrap_or("verify-full")) {
        Ok(mode) => mode?,
        Err(message) => {
            errs.push(invalid(format!("{key}.mode"), message));
            return None;
        }
    };
    if mode != TlsMode::Require && t.ca.is_none() {
        errs.push(invalid(
            format!("{key}.ca"),
            "verify-ca and verify-full need a CA bundle to verify against",
        ));
    }
    let client = match (&t.cert, &t.key) {
        (Some(cert), Some(k)) => Some(TlsFiles {
            cert: PemSource::from_setting(cert, &format!("{key}.cert"), None),
            key: PemSource::from_setting(k, &format!("{key}.key"), None),
        }),
        (None, None) => None,
        (Some(_), None) => {
            errs.push(invalid(format!("{key}.key"), "a client cert needs its key"));
            None
        }
        (None, Some(_)) => {
            errs.push(invalid(
                format!("{key}.cert"),
                "a client key needs its cert",
            ));
            None
        }
    };
    let sni = match &t.sni {
        Some(s) if s.is_empty() => {
            // An empty SNI makes pingora skip certificate verification entirely.
            errs.push(invalid(format!("{key}.sni"), "must not be empty"));
            return None;
        }
        Some(s) => s.clone(),
        None => host_of(address).to_owned(),
    };
    Some(UpstreamTls {
        mode,
        ca: t
            .ca
            .as_ref()
            .map(|ca| PemSource::from_setting(ca, &format!("{key}.ca"), None)),
        sni,
        client,
    })
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
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

fn section_key(section: &str, index: usize, name: &str) -> String {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        format!("{section}[{index}]")
    } else {
        format!("{section}.{name}")
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn duration(errs: &mut Vec<SettingsError>, field: &str, raw: Option<&str>) -> Option<Duration> {
    let raw = raw?;
    match humantime::parse_duration(raw) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(invalid(
                field,
                format!("{raw:?} is not a duration like \"10s\" or \"500ms\": {e}"),
            ));
            None
        }
    }
}

/// A duration where `"0s"` means "no limit".
fn optional_duration(
    errs: &mut Vec<SettingsError>,
    field: &str,
    raw: Option<&str>,
    default: Option<Duration>,
) -> Option<Duration> {
    match raw {
        None => default,
        Some(_) => duration(errs, field, raw).filter(|d| !d.is_zero()),
    }
}

#[cfg(test)]
mod tests;
