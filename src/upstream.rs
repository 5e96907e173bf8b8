//! Upstream → pingora peer: the connection settings for one request's upstream. Plaintext today;
//! TLS re-origination with verification modes arrives with issue #4.

use pingora::upstreams::peer::HttpPeer;

use crate::config::{Upstream, UpstreamProtocol};

/// Builds the peer for one request. Cheap: no TLS material is built here.
pub fn peer(up: &Upstream) -> HttpPeer {
    let mut peer = HttpPeer::new(up.address, false, String::new());
    let options = &mut peer.options;
    options.connection_timeout = Some(up.connect_timeout);
    options.read_timeout = up.read_timeout;
    options.write_timeout = up.write_timeout;
    options.idle_timeout = Some(up.idle_timeout);
    if up.protocol == UpstreamProtocol::H2c {
        // Prior-knowledge HTTP/2; without raising max_h2_streams (default 1) pingora would open
        // a new connection for every concurrent gRPC call.
        options.set_http_version(2, 2);
        options.max_h2_streams = up.max_h2_streams;
    } else {
        options.set_http_version(1, 1);
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn upstream(protocol: UpstreamProtocol) -> Upstream {
        Upstream {
            name: "u".into(),
            address: "127.0.0.1:9".parse().unwrap(),
            protocol,
            connect_timeout: Duration::from_secs(3),
            read_timeout: None,
            write_timeout: Some(Duration::from_secs(60)),
            idle_timeout: Duration::from_secs(60),
            max_h2_streams: 100,
        }
    }

    #[test]
    fn h2c_peers_multiplex_streams() {
        let p = peer(&upstream(UpstreamProtocol::H2c));
        assert_eq!(p.options.max_h2_streams, 100);
        assert_eq!(p.options.alpn, pingora::protocols::ALPN::H2);
        assert!(p.sni.is_empty());
    }

    #[test]
    fn http1_peers_speak_http1_only() {
        let p = peer(&upstream(UpstreamProtocol::Http1));
        assert_eq!(p.options.alpn, pingora::protocols::ALPN::H1);
        assert_eq!(p.options.connection_timeout, Some(Duration::from_secs(3)));
    }
}
