//! Downstream connections, accepted by smq-edge rather than by pingora's TLS listener: a plain
//! TCP pingora listener whose app runs the TLS handshake with a rustls `ServerConfig` built here
//! (TLS 1.2 and 1.3, the listener's ALPN, the certificate store's resolver, one session ticketer
//! for the whole process), counts connections, handshakes by version and ALPN, and handshake
//! failures by reason, then hands the stream to the listener's app (HTTP proxy or tcp relay).
//! Doing the handshake here is what makes failures observable: pingora only logs them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;

use super::stats::ListenerStats;
use crate::tls::resolver::StoreResolver;
use crate::tls::store::CertStore;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN for HTTP listeners: HTTP/2 preferred, HTTP/1.1 for clients that want it (WebSocket).
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What the access log needs to know about each open TLS connection (its SNI), by the client's
/// address, which is unique among open connections. HTTP/2 streams run in tasks of their own,
/// so a task-local would not reach them.
#[derive(Debug, Default)]
pub struct Handshakes {
    by_client: RwLock<HashMap<SocketAddr, Option<String>>>,
}

impl Handshakes {
    /// The SNI the client at `client` sent.
    pub fn sni(&self, client: &SocketAddr) -> Option<String> {
        self.by_client.read().ok()?.get(client).cloned().flatten()
    }
}

/// Builds a listener's rustls configuration. `ticketer` is shared by every listener so that
/// session resumption survives certificate reloads (as in rpxy's server_crypto.rs).
pub fn server_config(
    store: Arc<CertStore>,
    alpn: &[&[u8]],
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StoreResolver::new(store)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer = ticketer;
    Ok(config)
}

/// Accepts connections for one listener and runs its app on them.
pub struct Accepting<A> {
    /// TLS handshake for the listener; `None` for plaintext.
    pub acceptor: Option<Acceptor>,
    /// The listener's app (HTTP proxy or tcp relay).
    pub inner: Arc<A>,
    /// The listener's collectors.
    pub stats: Arc<ListenerStats>,
    /// SNI of each open connection, for the access log.
    pub handshakes: Arc<Handshakes>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Accepting<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = self.stats.open();
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let stream = match &self.acceptor {
            None => stream,
            Some(acceptor) => {
                // The listener is plain TCP; its stream is the concrete type the TLS layer takes.
                let Ok(tcp) = stream.into_any().downcast::<L4Stream>() else {
                    tracing::error!(listener = %self.stats.name, "unexpected stream type; closing");
                    return None;
                };
                // Boxed: inline, the handshake's state (~7 KiB under massif) sized this future for
                // the whole life of the connection; boxed, it is freed when the handshake ends.
                let handshake = Box::pin(acceptor.tls_handshake(*tcp));
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => {
                        let ssl = pingora::protocols::Ssl::get_ssl(&tls);
                        let version = crate::metrics::tls_version(
                            ssl.and_then(|s| s.version()).unwrap_or(""),
                        );
                        let alpn = match pingora::protocols::Ssl::selected_alpn_proto(&tls) {
                            Some(ALPN::H2) => "h2",
                            Some(ALPN::H1) => "http/1.1",
                            _ => "none",
                        };
                        self.stats
                            .metrics
                            .handshakes
                            .with_label_values(&[self.stats.name.as_str(), version, alpn])
                            .inc();
                        if let (Some(client), Ok(mut map)) =
                            (client, self.handshakes.by_client.write())
                        {
                            map.insert(
                                client,
                                ssl.and_then(|s| s.server_name()).map(str::to_owned),
                            );
                        }
                        Box::new(tls) as Stream
                    }
                    Ok(Err(e)) => {
                        let reason = failure_reason(&e.to_string());
                        self.stats
                            .metrics
                            .handshake_failures
                            .with_label_values(&[self.stats.name.as_str(), reason])
                            .inc();
                        tracing::debug!(listener = %self.stats.name, reason, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        self.stats
                            .metrics
                            .handshake_failures
                            .with_label_values(&[self.stats.name.as_str(), "timeout"])
                            .inc();
                        return None;
                    }
                }
            }
        };
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        if let (Some(client), Ok(mut map)) = (client, self.handshakes.by_client.write()) {
            map.remove(&client);
        }
        None
    }
}

/// Every `reason` label of `smq_edge_tls_handshake_failures_total`.
pub const FAILURE_REASONS: &[&str] = &[
    "client_closed",
    "client_alert",
    "incompatible",
    "malformed",
    "timeout",
    "other",
];

/// A bounded label for why a handshake failed, from the error text rustls and pingora give.
pub fn failure_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("eof")
        || e.contains("reset")
        || e.contains("broken pipe")
        || e.contains("connection closed")
    {
        "client_closed"
    } else if e.contains("alert") {
        "client_alert"
    } else if e.contains("incompatible")
        || e.contains("nociphersuitesincommon")
        || e.contains("protocol version")
    {
        "incompatible"
    } else if e.contains("invalidmessage") || e.contains("corrupt") || e.contains("invalid") {
        "malformed"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_bounded() {
        assert_eq!(
            failure_reason("TLSHandshakeFailure context: tls handshake eof"),
            "client_closed"
        );
        assert_eq!(
            failure_reason("received fatal alert: UnknownCA"),
            "client_alert"
        );
        assert_eq!(
            failure_reason("peer is incompatible: NoCipherSuitesInCommon"),
            "incompatible"
        );
        assert_eq!(
            failure_reason("received corrupt message of type InvalidContentType"),
            "malformed"
        );
        assert_eq!(failure_reason("something new"), "other");
    }
}
