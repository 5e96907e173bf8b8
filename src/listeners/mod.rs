//! Config → pingora services: one service per listener, TLS settings from the certificate stores,
//! and the checks pingora does not make for us (every address can be bound; a listener that fails
//! to start ends the process instead of panicking in a thread while the process lingers).

pub mod accept;
pub mod http;
pub mod stats;
pub mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::apps::HttpServerOptions;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::listeners::tls::Acceptor;
use pingora::server::configuration::ServerConf;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{Service, ServiceWithDependents};

use crate::access_log::AccessLog;
use crate::config::{Config, Listener, ListenerProtocol, Route, TlsFiles};
use crate::metrics::Metrics;
use crate::shutdown::InFlight;
use crate::tls::store::CertStore;
use crate::upstream::UpstreamRuntime;
use accept::{Accepting, HTTP_ALPN, Handshakes};
use http::HttpEdge;
use stats::ListenerStats;
use tcp::TcpEdge;

/// Why a listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The address is taken or not ours to bind.
    #[error("listener {listener}: cannot bind {addr}: {error}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address from the config.
        addr: SocketAddr,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Pingora refused the TLS settings.
    #[error("listener {listener}: TLS setup failed: {reason}")]
    Tls {
        /// Listener name.
        listener: String,
        /// What pingora said.
        reason: String,
    },
}

/// Binds every listener address once and releases it, so "address in use" is reported with the
/// listener's name before pingora starts (pingora would panic in a service thread instead).
pub fn check_binds(config: &Config) -> Result<(), ListenerError> {
    for l in &config.listeners {
        std::net::TcpListener::bind(l.listen).map_err(|error| ListenerError::Bind {
            listener: l.name.clone(),
            addr: l.listen,
            error,
        })?;
    }
    Ok(())
}

/// What every listener shares.
pub struct Shared {
    /// Every collector.
    pub metrics: Arc<Metrics>,
    /// Where access log lines go, if enabled.
    pub access_log: Option<AccessLog>,
    /// Counts requests so shutdown can wait for them.
    pub in_flight: InFlight,
}

/// Builds one pingora service per listener.
pub fn services(
    config: &Config,
    stores: &HashMap<TlsFiles, Arc<CertStore>>,
    upstreams: &Arc<Vec<Arc<UpstreamRuntime>>>,
    server_conf: &Arc<ServerConf>,
    shared: &Shared,
) -> Result<Vec<Box<dyn ServiceWithDependents>>, ListenerError> {
    let provider = crate::tls::provider();
    // One ticketer for the process: resumption survives certificate reloads.
    let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| ListenerError::Tls {
        listener: "*".into(),
        reason: e.to_string(),
    })?;
    let mut out: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    for l in &config.listeners {
        let stats = Arc::new(ListenerStats::new(&l.name, shared.metrics.clone()));
        let handshakes = Arc::new(Handshakes::default());
        let store = l.tls.as_ref().and_then(|files| stores.get(files));
        let alpn: &[&[u8]] = match l.protocol {
            ListenerProtocol::Http => HTTP_ALPN,
            ListenerProtocol::Tcp { .. } => &[],
        };
        let acceptor = match store {
            Some(store) => {
                let tls =
                    accept::server_config(store.clone(), alpn, provider.clone(), ticketer.clone())
                        .map_err(|e| ListenerError::Tls {
                            listener: l.name.clone(),
                            reason: e.to_string(),
                        })?;
                Some(Acceptor::from_server_config(Arc::new(tls)))
            }
            None => None,
        };
        let service: Box<dyn ServiceWithDependents> = match l.protocol {
            ListenerProtocol::Http => {
                let edge = HttpEdge {
                    listener: l.name.clone(),
                    is_tls: l.tls.is_some(),
                    routes: l.routes.clone(),
                    route_labels: l.routes.iter().map(route_label).collect(),
                    upstreams: upstreams.clone(),
                    in_flight: shared.in_flight.clone(),
                    bearer: config.standalone.as_ref().map(|s| s.token.clone()),
                    stats: stats.clone(),
                    access_log: shared.access_log.clone(),
                    handshakes: handshakes.clone(),
                };
                let mut proxy = pingora::proxy::http_proxy(server_conf, edge);
                if store.is_none() {
                    // Plaintext listeners also accept prior-knowledge HTTP/2, so gRPC clients work.
                    let mut options = HttpServerOptions::default();
                    options.h2c = true;
                    proxy.server_options = Some(options);
                }
                let app = Accepting {
                    acceptor,
                    inner: Arc::new(proxy),
                    stats,
                    handshakes,
                };
                listening(l, app, config.threads)
            }
            ListenerProtocol::Tcp { idle_timeout } => {
                let Some(upstream) = l.routes.first().map(|r| upstreams[r.upstream].clone()) else {
                    continue;
                };
                let edge = TcpEdge {
                    listener: l.name.clone(),
                    upstream,
                    connector: TransportConnector::new(None),
                    idle_timeout,
                    stats: stats.clone(),
                    access_log: shared.access_log.clone(),
                };
                let app = Accepting {
                    acceptor,
                    inner: Arc::new(edge),
                    stats,
                    handshakes,
                };
                listening(l, app, config.threads)
            }
        };
        out.push(service);
    }
    Ok(out)
}

/// A plain TCP pingora listener running `app` (which does the TLS handshake itself).
fn listening<A: ServerApp + Send + Sync + 'static>(
    l: &Listener,
    app: A,
    threads: usize,
) -> Box<dyn ServiceWithDependents> {
    let mut service = pingora::services::listening::Service::new(l.name.clone(), app);
    service.add_tcp(&l.listen.to_string());
    service.threads = Some(threads);
    Box::new(ExitOnStartFailure {
        listener: l.name.clone(),
        inner: service,
    })
}

/// A route's label for metrics and logs: from the config, never from a request.
fn route_label(route: &Route) -> String {
    match (&route.host, &route.path_prefix) {
        (Some(h), Some(p)) => format!("{h}{}", p.raw),
        (Some(h), None) => h.clone(),
        (None, Some(p)) => p.raw.clone(),
        (None, None) => "*".to_owned(),
    }
}

/// Runs a pingora service and ends the process if it fails while starting: pingora `expect`s its
/// listeners to build, which would otherwise leave a live process with a dead listener.
struct ExitOnStartFailure<S> {
    listener: String,
    inner: S,
}

#[async_trait]
impl<S: Service> Service for ExitOnStartFailure<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let started =
            std::panic::AssertUnwindSafe(self.inner.start_service(fds, shutdown, listeners_per_fd))
                .catch_unwind()
                .await;
        if started.is_err() {
            tracing::error!(listener = %self.listener, "listener failed to start; exiting");
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }
}
