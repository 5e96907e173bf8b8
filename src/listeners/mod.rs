//! Config → pingora services: one service per listener, TLS settings from the certificate stores,
//! and the checks pingora does not make for us (every address can be bound; a listener that fails
//! to start ends the process instead of panicking in a thread while the process lingers).

pub mod http;
pub mod stats;
pub mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::apps::HttpServerOptions;
use pingora::connectors::TransportConnector;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{Service, ServiceWithDependents};

use crate::config::{Config, Listener, ListenerProtocol, TlsFiles};
use crate::shutdown::InFlight;
use crate::tls::resolver::StoreResolver;
use crate::tls::store::CertStore;
use crate::upstream::UpstreamRuntime;
use http::HttpEdge;
use stats::ListenerStats;
use tcp::TcpEdge;

/// Each listener's counters, by listener name.
pub type StatsByListener = HashMap<String, Arc<ListenerStats>>;

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

/// Builds one pingora service per listener, and the counters each keeps.
pub fn services(
    config: &Config,
    stores: &HashMap<TlsFiles, Arc<CertStore>>,
    upstreams: &Arc<Vec<Arc<UpstreamRuntime>>>,
    server_conf: &Arc<ServerConf>,
    in_flight: &InFlight,
) -> Result<(Vec<Box<dyn ServiceWithDependents>>, StatsByListener), ListenerError> {
    let mut out: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    let mut all_stats = StatsByListener::new();
    for l in &config.listeners {
        let stats = Arc::new(ListenerStats::default());
        all_stats.insert(l.name.clone(), stats.clone());
        let store = l.tls.as_ref().and_then(|files| stores.get(files));
        match l.protocol {
            ListenerProtocol::Http => {
                let edge = HttpEdge {
                    listener: l.name.clone(),
                    is_tls: l.tls.is_some(),
                    routes: l.routes.clone(),
                    upstreams: upstreams.clone(),
                    in_flight: in_flight.clone(),
                    bearer: config.standalone.as_ref().map(|s| s.token.clone()),
                    stats,
                };
                let mut service = http_proxy_service_with_name(server_conf, edge, &l.name);
                if store.is_none() {
                    // Plaintext listeners also accept prior-knowledge HTTP/2, so gRPC clients work.
                    let mut options = HttpServerOptions::default();
                    options.h2c = true;
                    if let Some(app) = service.app_logic_mut() {
                        app.server_options = Some(options);
                    }
                }
                bind(&mut service, l, store, true)?;
                service.threads = Some(config.threads);
                out.push(Box::new(ExitOnStartFailure {
                    listener: l.name.clone(),
                    inner: service,
                }));
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
                    stats,
                };
                let mut service = pingora::services::listening::Service::new(l.name.clone(), edge);
                bind(&mut service, l, store, false)?;
                service.threads = Some(config.threads);
                out.push(Box::new(ExitOnStartFailure {
                    listener: l.name.clone(),
                    inner: service,
                }));
            }
        }
    }
    Ok((out, all_stats))
}

/// Adds the listener's address to `service`: TLS from its store (ALPN `h2` and `http/1.1` for
/// HTTP listeners), or plaintext.
fn bind<A>(
    service: &mut pingora::services::listening::Service<A>,
    l: &Listener,
    store: Option<&Arc<CertStore>>,
    http: bool,
) -> Result<(), ListenerError> {
    let addr = l.listen.to_string();
    let Some(store) = store else {
        service.add_tcp(&addr);
        return Ok(());
    };
    let mut tls = TlsSettings::intermediate("", "").map_err(|e| ListenerError::Tls {
        listener: l.name.clone(),
        reason: e.to_string(),
    })?;
    tls.set_cert_resolver(Arc::new(StoreResolver::new(store.clone())));
    if http {
        tls.enable_h2();
    }
    service.add_tls_with_settings(&addr, None, tls);
    Ok(())
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
