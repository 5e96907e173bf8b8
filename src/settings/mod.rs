//! Settings → `Config`: the one place that reads `config.toml`, applies defaults and checks every
//! value, naming the offending key (`listeners.https.listen`) so an operator can fix it.
//!
//! Pipeline: `config.toml` → [`file::FileConfig`] (serde mirror) → [`build`] → [`Config`].
//! Precedence today is file > default; `SMQ_*` environment overrides arrive with issue #4.

pub mod env;
pub mod file;
mod listener;
mod standalone;
mod tls;
mod upstream;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{AccessLogSettings, Config, Effective, Notice, Origin, ReloadSettings};
use env::Vars;
use file::FileConfig;

/// Default worker threads per listener.
pub const DEFAULT_THREADS: usize = 2;
/// Default idle upstream connections kept per worker: enough for every stream of a hundred
/// busy HTTP/2 clients to find a pooled HTTP/1.1 connection (pingora's own default of 128 made a
/// worker with 320 streams in flight open and close upstream connections on every few requests).
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 1024;
/// Default drain time after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default address of the admin listener: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// Default periodic certificate re-check.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a half-replaced certificate/key pair may take to settle.
pub const DEFAULT_RELOAD_SETTLE: Duration = Duration::from_secs(10);
/// Default idle time of a tcp listener's connection: long, because MQTT keep-alives can be.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
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

/// Reads and checks the config file, with `SMQ_*` overrides from `vars`. Relative paths are
/// taken relative to the current directory, as operators expect from `--config`.
pub fn load(path: &Path, vars: &dyn Vars) -> Result<Config, SettingsErrors> {
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
    build(file, vars)
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

/// The state of one settings build: the variables read, and what it found and decided.
pub struct Build<'a> {
    vars: &'a dyn Vars,
    errs: Vec<SettingsError>,
    notices: Vec<Notice>,
    effective: Vec<Effective>,
}

impl Build<'_> {
    fn notice(&mut self, warn: bool, message: String) {
        self.notices.push(Notice { warn, message });
    }

    fn record(&mut self, key: impl Into<String>, value: impl fmt::Display, origin: Origin) {
        self.effective.push(Effective {
            key: key.into(),
            value: value.to_string(),
            origin,
        });
    }

    /// Records a value that is either the file's or the default.
    fn record_or_default<T: fmt::Display>(&mut self, key: &str, from_file: bool, value: T) {
        let origin = if from_file {
            Origin::File
        } else {
            Origin::Default
        };
        self.record(key, value, origin);
    }
}

/// Turns the file's raw values, overridden by `SMQ_*` variables, into a checked [`Config`],
/// collecting every error.
pub fn build(mut file: FileConfig, vars: &dyn Vars) -> Result<Config, SettingsErrors> {
    let mut b = Build {
        vars,
        errs: Vec::new(),
        notices: Vec::new(),
        effective: Vec::new(),
    };
    let standalone = standalone::apply(&mut b, &mut file);
    let threads = match file.server.threads {
        Some(0) => {
            b.errs.push(invalid("server.threads", "must be at least 1"));
            DEFAULT_THREADS
        }
        Some(n) => n,
        None => DEFAULT_THREADS,
    };
    b.record_or_default("server.threads", file.server.threads.is_some(), threads);
    let upstream_keepalive = file
        .server
        .upstream_keepalive
        .unwrap_or(DEFAULT_UPSTREAM_KEEPALIVE);
    b.record_or_default(
        "server.upstream_keepalive",
        file.server.upstream_keepalive.is_some(),
        upstream_keepalive,
    );
    let shutdown_grace = duration(
        &mut b.errs,
        "server.shutdown_grace",
        file.server.shutdown_grace.as_deref(),
    )
    .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
    let grace_set = file.server.shutdown_grace.is_some();
    b.record_or_default(
        "server.shutdown_grace",
        grace_set,
        humantime::format_duration(shutdown_grace),
    );

    let reload = ReloadSettings {
        watch: file.reload.watch.unwrap_or(true),
        interval: duration(
            &mut b.errs,
            "reload.interval",
            file.reload.interval.as_deref(),
        )
        .unwrap_or(DEFAULT_RELOAD_INTERVAL),
        settle: duration(&mut b.errs, "reload.settle", file.reload.settle.as_deref())
            .unwrap_or(DEFAULT_RELOAD_SETTLE),
    };
    if reload.interval.is_zero() {
        b.errs
            .push(invalid("reload.interval", "must be longer than 0s"));
    }
    b.record_or_default("reload.watch", file.reload.watch.is_some(), reload.watch);
    let (interval_set, settle_set) = (file.reload.interval.is_some(), file.reload.settle.is_some());
    b.record_or_default(
        "reload.interval",
        interval_set,
        humantime::format_duration(reload.interval),
    );
    b.record_or_default(
        "reload.settle",
        settle_set,
        humantime::format_duration(reload.settle),
    );

    let admin = file.admin.as_ref().and_then(|a| {
        let raw = a.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
        match raw.parse::<std::net::SocketAddr>() {
            Ok(addr) => {
                b.record_or_default("admin.listen", a.listen.is_some(), addr);
                Some(addr)
            }
            Err(_) => {
                b.errs.push(invalid(
                    "admin.listen",
                    format!("{raw:?} is not an IP:port socket address"),
                ));
                None
            }
        }
    });
    let access_log = match file.access_log.enabled {
        Some(false) => None,
        _ => {
            let json = match file.access_log.format.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    b.errs.push(invalid(
                        "access_log.format",
                        format!("unknown format {other:?}; expected \"text\" or \"json\""),
                    ));
                    false
                }
            };
            b.record_or_default(
                "access_log.format",
                file.access_log.format.is_some(),
                if json { "json" } else { "text" },
            );
            let path = file
                .access_log
                .path
                .as_deref()
                .filter(|p| *p != "-")
                .map(PathBuf::from);
            b.record_or_default(
                "access_log.path",
                file.access_log.path.is_some(),
                path.as_ref()
                    .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            );
            Some(AccessLogSettings { json, path })
        }
    };

    let mut upstreams = Vec::new();
    let mut upstream_index = HashMap::new();
    for (i, u) in file.upstreams.iter().enumerate() {
        let key = section_key("upstreams", i, &u.name);
        let is_tcp = u.protocol.as_deref() == Some("tcp");
        if upstream_index
            .insert(u.name.clone(), (upstreams.len(), is_tcp))
            .is_some()
        {
            b.errs.push(invalid(
                format!("{key}.name"),
                format!("duplicate upstream name {:?}", u.name),
            ));
        }
        if let Some(up) = upstream::build(&mut b, &key, u) {
            upstreams.push(up);
        } else {
            upstream_index.remove(&u.name);
        }
    }

    let names: Vec<&str> = file.listeners.iter().map(|l| l.name.as_str()).collect();
    let mut listeners = Vec::new();
    let mut seen_names = HashMap::new();
    for (i, l) in file.listeners.iter().enumerate() {
        let key = section_key("listeners", i, &l.name);
        if seen_names.insert(l.name.clone(), ()).is_some() {
            b.errs.push(invalid(
                format!("{key}.name"),
                format!("duplicate listener name {:?}", l.name),
            ));
        }
        let has_grpc_sibling = names.contains(&format!("{}-grpc", l.name).as_str());
        if let Some(listener) = listener::build(&mut b, &key, l, &upstream_index, has_grpc_sibling)
        {
            listeners.push(listener);
        }
    }
    if file.listeners.is_empty() {
        b.errs.push(invalid(
            "listeners",
            "at least one [[listeners]] entry is needed",
        ));
    }
    if let Some(level) = &file.log.level {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            b.errs.push(invalid(
                "log.level",
                format!(
                    "{level:?} is not a log filter (e.g. \"info\" or \"info,smq_edge=debug\"): {e}"
                ),
            ));
        }
    }
    let mut seen = HashMap::new();
    for l in &listeners {
        if let Some(other) = seen.insert(l.listen, l.name.clone()) {
            b.errs.push(invalid(
                format!("listeners.{}.listen", l.name),
                format!("{} is also used by listener {other:?}", l.listen),
            ));
        }
    }

    if !b.errs.is_empty() {
        return Err(SettingsErrors(b.errs));
    }
    Ok(Config {
        threads,
        upstream_keepalive,
        shutdown_grace,
        reload,
        admin,
        access_log,
        log_level: file.log.level.clone(),
        dev_certs_dir: file.dev_certs.map(|d| PathBuf::from(d.dir)),
        listeners,
        upstreams,
        standalone,
        notices: b.notices,
        effective: b.effective,
    })
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
