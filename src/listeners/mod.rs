//! Config → pingora services: one service per listener, with TLS settings from the certificate
//! stores; `binding` gets each listener its address.

pub mod accept;
pub mod binding;
pub mod http;
pub mod stats;
pub mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::listeners::tls::Acceptor;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::services::ServiceWithDependents;

use crate::access_log::AccessLog;
use crate::config::{Config, Listener, ListenerProtocol, Route, TlsFiles};
use crate::metrics::Metrics;
use crate::shutdown::InFlight;
use crate::tls::store::CertStore;
use crate::upstream::{ConnectGate, UpstreamRuntime};
use accept::{Accepting, HTTP_ALPN, Handshakes};
use binding::{Bindings, Socket, Worker};
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

/// What every listener shares.
pub struct Shared {
    /// Every collector.
    pub metrics: Arc<Metrics>,
    /// Where access log lines go, if enabled.
    pub access_log: Option<AccessLog>,
    /// Counts requests so shutdown can wait for them.
    pub in_flight: InFlight,
    /// Which listeners hold their address.
    pub bindings: Arc<Bindings>,
}

/// Builds the pingora services: `config.threads` single-threaded workers per listener (see
/// `binding`).
pub fn services(
    config: &Config,
    stores: &HashMap<TlsFiles, Arc<CertStore>>,
    upstreams: &Arc<Vec<Arc<UpstreamRuntime>>>,
    shared: &Shared,
) -> Result<Vec<Box<dyn ServiceWithDependents>>, ListenerError> {
    let provider = crate::tls::provider();
    // One ticketer for the process: resumption survives certificate reloads.
    let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| ListenerError::Tls {
        listener: "*".into(),
        reason: e.to_string(),
    })?;
    // Series with bounded labels exist from the start, so dashboards and alerts see zeros.
    for up in upstreams.iter() {
        for kind in crate::respond::UPSTREAM_ERROR_KINDS {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&[up.config.name.as_str(), kind]);
        }
    }
    // Each worker is one thread with its own proxy and so its own upstream pool: pingora sizes
    // a proxy's pool as `upstream_keepalive_pool_size × threads`.
    let worker_conf = Arc::new(ServerConf {
        threads: 1,
        upstream_keepalive_pool_size: config.upstream_keepalive,
        ..server_conf(config)
    });
    let mut out: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    for l in &config.listeners {
        let http = matches!(l.protocol, ListenerProtocol::Http);
        let stats = Arc::new(ListenerStats::new(&l.name, shared.metrics.clone(), http));
        let handshakes = Arc::new(Handshakes::default());
        let store = l.tls.as_ref().and_then(|files| stores.get(files));
        if store.is_some() {
            for reason in accept::FAILURE_REASONS {
                shared
                    .metrics
                    .handshake_failures
                    .with_label_values(&[l.name.as_str(), reason]);
            }
        }
        let alpn: &[&[u8]] = match l.protocol {
            ListenerProtocol::Http => HTTP_ALPN,
            ListenerProtocol::Tcp { .. } => &[],
        };
        let tls = match store {
            Some(store) => {
                let tls =
                    accept::server_config(store.clone(), alpn, provider.clone(), ticketer.clone())
                        .map_err(|e| ListenerError::Tls {
                            listener: l.name.clone(),
                            reason: e.to_string(),
                        })?;
                Some(Arc::new(tls))
            }
            None => None,
        };
        let Some(socket) = shared.bindings.socket(&l.name) else {
            continue;
        };
        for worker in 0..config.threads {
            // Each worker has its own app, so its own upstream connection pool.
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
                        connect_gates: upstreams
                            .iter()
                            .map(|u| ConnectGate::for_upstream(&u.config))
                            .collect(),
                    };
                    let mut proxy = pingora::proxy::http_proxy(&worker_conf, edge);
                    if store.is_none() {
                        // Plaintext listeners also accept prior-knowledge HTTP/2, so gRPC clients work.
                        let mut options = HttpServerOptions::default();
                        options.h2c = true;
                        proxy.server_options = Some(options);
                    }
                    let app = Accepting {
                        acceptor: tls.clone().map(Acceptor::from_server_config),
                        inner: Arc::new(proxy),
                        stats: stats.clone(),
                        handshakes: handshakes.clone(),
                    };
                    worker_service(l, worker, app, &socket)
                }
                ListenerProtocol::Tcp { idle_timeout } => {
                    let Some(upstream) = l.routes.first().map(|r| upstreams[r.upstream].clone())
                    else {
                        continue;
                    };
                    let edge = TcpEdge {
                        listener: l.name.clone(),
                        upstream,
                        connector: TransportConnector::new(None),
                        idle_timeout,
                        stats: stats.clone(),
                        access_log: shared.access_log.clone(),
                        handshakes: handshakes.clone(),
                        in_flight: shared.in_flight.clone(),
                    };
                    let app = Accepting {
                        acceptor: tls.clone().map(Acceptor::from_server_config),
                        inner: Arc::new(edge),
                        stats: stats.clone(),
                        handshakes: handshakes.clone(),
                    };
                    worker_service(l, worker, app, &socket)
                }
            };
            out.push(service);
        }
    }
    Ok(out)
}

/// Pingora's process settings: our threads, and a grace period long enough for the drain, which
/// ends it early (see `shutdown`).
pub fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.threads,
        // One single-threaded runtime per worker thread, as nginx runs one event loop per
        // worker: a connection stays on its thread, sparing the cross-thread wake-ups that
        // dominated a perf profile under wrk with work stealing.
        work_stealing: false,
        grace_period_seconds: Some(config.shutdown_grace.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    }
}

/// One worker of listener `l`: a single-threaded plain TCP pingora service running `app` (which
/// does the TLS handshake itself) on the listener's socket.
fn worker_service<A: ServerApp + Send + Sync + 'static>(
    l: &Listener,
    worker: usize,
    app: A,
    socket: &Arc<Socket>,
) -> Box<dyn ServiceWithDependents> {
    let mut service =
        pingora::services::listening::Service::new(format!("{}#{worker}", l.name), app);
    // No read buffer under the TLS or HTTP parser: both read into buffers of their own, so
    // pingora's default 64 KiB (zero-filled per connection) only cost a copy per read and, under
    // massif, 64 KiB of the ~120 KiB each idle connection held.
    let l4_buffer = L4BufferSettings::default().read(0);
    service.add_listener(ListenerConfig::tcp(l.listen.to_string()).l4_buffer(l4_buffer));
    Box::new(Worker {
        socket: socket.clone(),
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
