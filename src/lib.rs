//! smq-edge: a TLS-terminating reverse proxy for SuperMQ's plaintext services.
//!
//! # Layout
//! Data flows one way, one module per step:
//! - [`settings`]: `config.toml` → checked [`config::Config`], errors naming the key.
//! - [`tls`]: PEM → checked certificate stores; the rustls resolver that serves them.
//! - [`listeners`]: `Config` + stores → pingora services, one per listener.
//! - [`routes`]: (Host, path) → route, pure.
//! - [`upstream`]: route's upstream → pingora peer.
//! - [`respond`]: errors → HTTP or gRPC answers.
//! - [`shutdown`]: signals → drain → exit.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod access_log;
pub mod admin;
pub mod config;
pub mod listeners;
pub mod metrics;
pub mod proxy_protocol;
pub mod respond;
pub mod routes;
pub mod settings;
pub mod shutdown;
pub mod tls;
pub mod upstream;

/// Exit code when the proxy cannot start: sysexits' EX_USAGE, as linkerd2-proxy uses for bad
/// config.
pub const EXIT_USAGE: u8 = 64;
