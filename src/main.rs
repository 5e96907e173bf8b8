//! smq-edge binary. Read top to bottom, this is the request path:
//! CLI → settings → `Config` → TLS stores → listeners (routes → upstream peers) → run until a
//! signal, drain, exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use smq_edge::config::Config;
use smq_edge::settings::env::ProcessEnv;
use smq_edge::shutdown::{self, InFlight};
use smq_edge::tls::dev_certs;
use smq_edge::tls::material::Material;
use smq_edge::tls::reloader::Reloader;
use smq_edge::{listeners, settings};

/// Exit code when the proxy cannot start: sysexits' EX_USAGE, as linkerd2-proxy uses for bad config.
const EXIT_USAGE: u8 = 64;

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
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check { print } => check(&cli.config, print),
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
fn check(path: &Path, print: bool) -> anyhow::Result<()> {
    let (config, material) = prepare(path)?;
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
fn run(path: &Path) -> anyhow::Result<()> {
    let (config, material) = prepare(path)?;
    listeners::check_binds(&config)?;

    let mut server = Server::new_with_opt_and_conf(None, server_conf(&config));
    server.bootstrap();
    let in_flight = InFlight::default();
    let (services, _stats) = listeners::services(
        &config,
        &material.listeners,
        &material.upstreams,
        &server.configuration,
        &in_flight,
    )?;
    let reloader = Reloader::new(material.reloadable, config.reload);
    server.add_service(background_service("tls reloader", reloader));
    for service in services {
        server.add_boxed_service(service);
    }
    shutdown::drain_then_exit(
        server.watch_execution_phase(),
        in_flight,
        config.shutdown_grace,
    );
    for l in &config.listeners {
        let tls = if l.tls.is_some() {
            "tls"
        } else {
            "plaintext, NOT encrypted"
        };
        tracing::info!(listener = %l.name, addr = %l.listen, tls, "listening");
    }
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown::GracefulSignals),
    });
    Ok(())
}

/// Settings → `Config` → TLS stores, with dev certificates created first when asked for.
fn prepare(path: &Path) -> anyhow::Result<(Config, Material)> {
    let config = settings::load(path, &ProcessEnv)?;
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

/// Pingora's process settings: our threads, and a grace period long enough for the drain, which
/// ends it early (see `shutdown`).
fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.shutdown_grace.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    }
}

/// Default log filter. pingora logs a client that hangs up before sending the HTTP/2 preface
/// (TCP health probes, scanners) at error level; that is not for an operator to act on.
const DEFAULT_LOG_FILTER: &str = "info,pingora_core::apps=off";

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
