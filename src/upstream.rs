//! Upstream → pingora peer: the connection settings for one request's upstream, plaintext or
//! TLS re-originated with one of the verification modes. The TLS material (CA bundle, client
//! certificate) is read from hot-reloaded stores when the peer is built, and its generation goes
//! into the pool key so a connection made under old material is never reused after a swap.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{WrappedX509, parse_x509};

use crate::config::{TlsMode, Upstream, UpstreamProtocol};
use crate::proxy_protocol::{self, ProxyProtocolConnect};
use crate::tls::store::{CaStore, ClientStore};

/// An upstream with the stores its TLS reads from.
#[derive(Debug)]
pub struct UpstreamRuntime {
    /// Settings from the config.
    pub config: Upstream,
    /// CA bundle for the verifying modes.
    pub ca: Option<Arc<CaStore>>,
    /// Client certificate for mutual TLS.
    pub client: Option<Arc<ClientStore>>,
    /// Trust anchor handed to pingora in `require` mode when no CA is configured: pingora builds
    /// its accept-anything verifier on top of a WebPKI verifier, which refuses an empty root
    /// store. It is never used to trust anything.
    placeholder_ca: Option<Arc<CaType>>,
}

impl UpstreamRuntime {
    /// Pairs an upstream with its stores.
    pub fn new(
        config: Upstream,
        ca: Option<Arc<CaStore>>,
        client: Option<Arc<ClientStore>>,
    ) -> Result<Self, rcgen::Error> {
        let placeholder_ca = match &config.tls {
            Some(tls) if tls.mode == TlsMode::Require && ca.is_none() => {
                Some(placeholder_anchor()?)
            }
            _ => None,
        };
        Ok(Self {
            config,
            ca,
            client,
            placeholder_ca,
        })
    }

    /// Builds the peer for one request or tcp session from `client` to the proxy's `server`
    /// address. Cheap: `Arc` clones of prepared material (and a PROXY header when asked for).
    pub fn peer(&self, client: Option<SocketAddr>, server: Option<SocketAddr>) -> HttpPeer {
        let up = &self.config;
        let sni = up.tls.as_ref().map(|t| t.sni.clone()).unwrap_or_default();
        let mut peer = HttpPeer::new(up.address, up.tls.is_some(), sni);
        let options = &mut peer.options;
        options.connection_timeout = Some(up.connect_timeout);
        options.read_timeout = up.read_timeout;
        options.write_timeout = up.write_timeout;
        options.idle_timeout = Some(up.idle_timeout);
        if up.protocol == UpstreamProtocol::H2c {
            // HTTP/2 (prior knowledge in plaintext, ALPN h2 over TLS). Without raising
            // max_h2_streams (default 1) pingora would open a connection per concurrent call.
            options.set_http_version(2, 2);
            options.max_h2_streams = up.max_h2_streams;
        } else {
            options.set_http_version(1, 1);
        }
        let mut pool_key = 0;
        if let (true, Some(client), Some(server)) = (up.proxy_protocol, client, server) {
            match proxy_protocol::header(client, server) {
                Ok(header) => {
                    options.custom_l4 = Some(Arc::new(ProxyProtocolConnect::new(
                        header,
                        up.connect_timeout,
                    )));
                    // A connection announces one client: never reuse it for another.
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    client.hash(&mut h);
                    pool_key = h.finish();
                }
                Err(e) => {
                    tracing::warn!(upstream = %up.name, error = %e, "cannot build the PROXY protocol header")
                }
            }
        }
        if let Some(tls) = &up.tls {
            options.verify_cert = tls.mode != TlsMode::Require;
            options.verify_hostname = tls.mode == TlsMode::VerifyFull;
            let mut generation = 0;
            if let Some(ca) = &self.ca {
                options.ca = Some(ca.current().pingora.clone());
                generation = ca.generation();
            } else {
                options.ca = self.placeholder_ca.clone();
            }
            if let Some(client) = &self.client {
                peer.client_cert_key = Some(client.current().pingora.clone());
                generation = generation.wrapping_mul(1 << 32) ^ client.generation();
            }
            // The pool key: connections verified under older material are not reused.
            pool_key ^= generation;
        }
        peer.group_key = pool_key;
        peer
    }
}

/// Lets one request at a time per worker open a connection to an HTTP/2 upstream. Pingora's h2
/// connector opens a new connection for every request that finds none pooled, so a cold burst
/// (every call arriving while the first connection is still being made) opened about one
/// connection per call: 19 for 96 calls in tests/grpc.rs, and 30 to 440 for h2load's 640
/// concurrent gRPC calls in the benchmark, where HAProxy opened 8. Behind the gate a request
/// waits for the connection in progress to be pooled and then multiplexes over it.
#[derive(Debug, Default)]
pub struct ConnectGate(Arc<tokio::sync::Mutex<()>>);

/// Held by the request that may open a connection, from `upstream_peer` until pingora has a
/// session for it (reused or new) or the connect failed.
pub type ConnectPass = tokio::sync::OwnedMutexGuard<()>;

impl ConnectGate {
    /// A gate for `upstream` if its connections are multiplexed (HTTP/2 without a PROXY header,
    /// which makes every client's connection its own).
    pub fn for_upstream(upstream: &Upstream) -> Option<Self> {
        (upstream.protocol == UpstreamProtocol::H2c && !upstream.proxy_protocol).then(Self::default)
    }

    /// Waits for the connection attempt in progress, for at most `wait`: past it the request
    /// goes ahead without the pass, so an upstream that does not answer holds each request for
    /// one connect timeout, not one per request queued ahead of it.
    pub async fn enter(&self, wait: Duration) -> Option<ConnectPass> {
        tokio::time::timeout(wait, self.0.clone().lock_owned())
            .await
            .ok()
    }
}

fn placeholder_anchor() -> Result<Arc<CaType>, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    Ok(Arc::from(vec![WrappedX509::new(
        cert.der().to_vec(),
        parse_x509,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamTls;

    fn upstream(protocol: UpstreamProtocol, tls: Option<UpstreamTls>) -> UpstreamRuntime {
        let config = Upstream {
            name: "u".into(),
            address: "127.0.0.1:9".parse().unwrap(),
            protocol,
            connect_timeout: Duration::from_secs(3),
            read_timeout: None,
            write_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Duration::from_secs(60),
            max_h2_streams: 100,
            tls,
            proxy_protocol: false,
        };
        UpstreamRuntime::new(config, None, None).unwrap()
    }

    #[test]
    fn only_multiplexed_upstreams_have_a_connect_gate() {
        let h2 = upstream(UpstreamProtocol::H2c, None).config;
        assert!(ConnectGate::for_upstream(&h2).is_some());
        let h1 = upstream(UpstreamProtocol::Http1, None).config;
        assert!(ConnectGate::for_upstream(&h1).is_none());
        // A PROXY header makes each client's connection its own: nothing to share.
        let announced = Upstream {
            proxy_protocol: true,
            ..h2
        };
        assert!(ConnectGate::for_upstream(&announced).is_none());
    }

    fn tls(mode: TlsMode) -> Option<UpstreamTls> {
        Some(UpstreamTls {
            mode,
            ca: None,
            sni: "clients".into(),
            client: None,
        })
    }

    #[test]
    fn h2c_peers_multiplex_streams() {
        let p = upstream(UpstreamProtocol::H2c, None).peer(None, None);
        assert_eq!(p.options.max_h2_streams, 100);
        assert_eq!(p.options.alpn, pingora::protocols::ALPN::H2);
        assert!(p.sni.is_empty());
        assert!(!p.is_tls());
    }

    #[test]
    fn http1_peers_speak_http1_only() {
        let p = upstream(UpstreamProtocol::Http1, None).peer(None, None);
        assert_eq!(p.options.alpn, pingora::protocols::ALPN::H1);
        assert_eq!(p.options.connection_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn modes_map_to_pingora_verification_flags_and_sni_is_always_set() {
        for (mode, cert, host) in [
            (TlsMode::Require, false, false),
            (TlsMode::VerifyCa, true, false),
            (TlsMode::VerifyFull, true, true),
        ] {
            let p = upstream(UpstreamProtocol::H2c, tls(mode)).peer(None, None);
            assert!(p.is_tls());
            assert_eq!(p.sni, "clients", "{mode:?}");
            assert_eq!(
                (p.options.verify_cert, p.options.verify_hostname),
                (cert, host),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn require_without_a_ca_gets_a_placeholder_anchor() {
        let p = upstream(UpstreamProtocol::Http1, tls(TlsMode::Require)).peer(None, None);
        assert_eq!(p.options.ca.as_ref().map(|c| c.len()), Some(1));
    }
}
