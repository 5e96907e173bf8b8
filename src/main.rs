//! smq-edge binary. Read top to bottom, this is the request path:
//! CLI → settings → `Config` → TLS stores → listeners (routes → upstream peers) → run until a
//! signal, drain, exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use std::sync::Arc;

use smq_edge::access_log::{self, AccessLog};
use smq_edge::admin::Admin;
use smq_edge::config::{AccessLogSettings, Config};
use smq_edge::listeners::binding::{self, Bindings};
use smq_edge::metrics::Metrics;
use smq_edge::settings::env::ProcessEnv;
use smq_edge::shutdown::{self, InFlight};
use smq_edge::tls::dev_certs;
use smq_edge::tls::material::Material;
use smq_edge::tls::reloader::Reloader;
use smq_edge::{EXIT_USAGE, listeners, settings};

/// mimalloc instead of glibc's malloc: pingora's request path allocates and frees header maps and
/// buffers per request, and glibc's malloc/free (with `malloc_consolidate`) was ~14% of the CPU
/// in a perf profile under keep-alive load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "TLS-terminating reverse proxy for SuperMQ services")]
struct Cli {
    /// Path to the configuration file.
    #[arg(long, short, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Load and check the configuration and every certificate and key it names, then exit.
    Check {
        /// Print every effective setting and where it came from (file, env variable, default).
        #[arg(long)]
        print: bool,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a new development CA and server certificate (localhost, 127.0.0.1, ::1, users, clients).
    Dev {
        /// Directory to write ca.crt, server.crt and server.key into.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let log_filter = init_logging();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config, &log_filter),
        Command::Check { print } => check(&cli.config, print, &log_filter),
        Command::Certs {
            command: CertsCommand::Dev { dir },
        } => dev_certs::generate(&dir)
            .map(|()| println!("wrote {}", dir.display()))
            .context("smq-edge certs dev"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line per problem, each naming the key or file to fix.
            for line in format!("{e:#}").lines() {
                eprintln!("smq-edge: error: {line}");
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `smq-edge check`: everything `run` does before binding.
fn check(path: &Path, print: bool, log_filter: &LogFilter) -> anyhow::Result<()> {
    let (config, material) = prepare(path, log_filter)?;
    if print {
        for e in &config.effective {
            println!("{} = {:?}  # {}", e.key, e.value, e.origin);
        }
    }
    for l in &config.listeners {
        let tls = match l.tls.as_ref().and_then(|f| material.listeners.get(f)) {
            Some(store) => store.summary().map_or_else(
                || "tls".to_owned(),
                |s| format!("tls {} (expires {})", s.subject, s.not_after),
            ),
            None => "plaintext".to_owned(),
        };
        let routes = l.routes.len();
        let plural = if routes == 1 { "" } else { "s" };
        println!(
            "listener {} {} {tls}, {routes} route{plural}",
            l.name, l.listen
        );
    }
    println!("configuration {} is valid", path.display());
    Ok(())
}

/// `smq-edge run`: prepare, bind, serve until SIGTERM/SIGINT, drain, exit.
fn run(path: &Path, log_filter: &LogFilter) -> anyhow::Result<()> {
    let (config, material) = prepare(path, log_filter)?;
    binding::check_binds(config.listeners.iter().map(|l| (l.name.as_str(), l.listen)))?;

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let (access_log, log_guard) = match &config.access_log {
        Some(settings) => {
            let (log, guard) = open_access_log(settings)?;
            (Some(log), Some(guard))
        }
        None => (None, None),
    };

    let mut server = Server::new_with_opt_and_conf(None, listeners::server_conf(&config));
    server.bootstrap();
    let shared = listeners::Shared {
        metrics: metrics.clone(),
        access_log,
        in_flight: InFlight::default(),
        bindings: Bindings::new(
            config.listeners.iter().map(|l| (l.name.clone(), l.listen)),
            config.threads,
        ),
    };
    let services = listeners::services(&config, &material.listeners, &material.upstreams, &shared)?;
    let reloader = Reloader::new(material.reloadable, config.reload, metrics.clone());
    server.add_service(background_service("tls reloader", reloader));
    if let Some(addr) = config.admin {
        let admin = Admin::new(addr, metrics, shared.bindings.clone(), material.inventory);
        server.add_service(background_service("admin", admin));
    }
    for service in services {
        server.add_boxed_service(service);
    }
    // Flush the access log's queue before the process exits.
    let flush = move || drop(log_guard);
    shutdown::drain_then_exit(
        server.watch_execution_phase(),
        shared.in_flight.clone(),
        config.shutdown_grace,
        Box::new(flush),
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::GracefulSignals),
    });
    Ok(())
}

/// Settings → `Config` → TLS stores, with dev certificates created first when asked for.
fn prepare(path: &Path, log_filter: &LogFilter) -> anyhow::Result<(Config, Material)> {
    let config = settings::load(path, &ProcessEnv)?;
    apply_log_level(log_filter, config.log_level.as_deref());
    for n in &config.notices {
        if n.warn {
            tracing::warn!("{}", n.message);
        } else {
            tracing::info!("{}", n.message);
        }
    }
    if let Some(dir) = &config.dev_certs_dir {
        if dev_certs::ensure(dir)? == dev_certs::Outcome::Generated {
            tracing::warn!(dir = %dir.display(), "generated DEVELOPMENT certificates; do not use them in production");
        }
    }
    let material =
        Material::load(&config).map_err(|problems| anyhow::anyhow!(problems.join("\n")))?;
    for l in &config.listeners {
        match l.tls.as_ref().and_then(|f| material.listeners.get(f)) {
            Some(store) => {
                if let Some(s) = store.summary() {
                    tracing::info!(listener = %l.name, subject = %s.subject, sans = ?s.sans,
                        serial = %s.serial, not_after = %s.not_after, "certificate loaded");
                }
            }
            None => {
                tracing::warn!(listener = %l.name, "listener has no [listeners.tls]: traffic is NOT encrypted")
            }
        }
    }
    Ok((config, material))
}

/// Default log filter. pingora logs a client that hangs up before sending the HTTP/2 preface
/// (TCP health probes, scanners) at error level; that is not for an operator to act on. And
/// rustls warns (through `log`) on every handshake from a client that sends an IP address as
/// SNI, which is common and harmless; at warn that is a log line per connection.
const DEFAULT_LOG_FILTER: &str = "info,pingora_core::apps=off,rustls=error";

/// Handle to change the log filter once the config is read.
type LogFilter =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging() -> LogFilter {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .init();
    handle
}

/// Applies `[log] level` (checked by `settings`) unless `RUST_LOG` is set: the environment wins,
/// as for every setting.
fn apply_log_level(handle: &LogFilter, level: Option<&str>) {
    let (Some(level), Err(_)) = (level, std::env::var("RUST_LOG")) else {
        return;
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| e.to_string())
        .and_then(|filter| handle.reload(filter).map_err(|e| e.to_string()))
    {
        tracing::warn!(level, error = %e, "cannot apply [log] level");
    }
}

/// Opens the access log's destination behind a non-blocking writer.
fn open_access_log(
    settings: &AccessLogSettings,
) -> anyhow::Result<(AccessLog, tracing_appender::non_blocking::WorkerGuard)> {
    let format = if settings.json {
        access_log::Format::Json
    } else {
        access_log::Format::Text
    };
    let (writer, guard) = match &settings.path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("access_log.path: cannot open {}", path.display()))?;
            tracing_appender::non_blocking(file)
        }
        None => tracing_appender::non_blocking(std::io::stdout()),
    };
    Ok((AccessLog::new(format, writer), guard))
}
