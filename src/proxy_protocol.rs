//! PROXY protocol v2 towards upstreams: a pingora L4 connector that writes the header with the
//! client's address right after the TCP connect (before any TLS), so brokers behind the proxy
//! see the real client.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::{Error, ErrorType, OrErr, Result};
use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::AsyncWriteExt;

/// The PROXY v2 header for a TCP connection from `client` to `server` (the proxy's own
/// listening address).
pub fn header(client: SocketAddr, server: SocketAddr) -> std::io::Result<Vec<u8>> {
    // Mixed families (an IPv4 client on an IPv6 listener) are written as IPv6.
    let (client, server) = match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V6(s)) => (
            SocketAddr::new(c.ip().to_ipv6_mapped().into(), c.port()),
            SocketAddr::V6(s),
        ),
        (SocketAddr::V6(c), SocketAddr::V4(s)) => (
            SocketAddr::V6(c),
            SocketAddr::new(s.ip().to_ipv6_mapped().into(), s.port()),
        ),
        pair => pair,
    };
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, server),
    )
    .build()
}

/// Connects over TCP and sends a prepared PROXY v2 header first.
#[derive(Debug)]
pub struct ProxyProtocolConnect {
    header: Vec<u8>,
    timeout: Duration,
}

impl ProxyProtocolConnect {
    /// A connector that announces `header`, giving the TCP connect `timeout`.
    pub fn new(header: Vec<u8>, timeout: Duration) -> Self {
        Self { header, timeout }
    }
}

#[async_trait]
impl L4Connect for ProxyProtocolConnect {
    async fn connect(&self, addr: &PeerAddr) -> Result<Stream> {
        let Some(inet) = addr.as_inet() else {
            return Error::e_explain(
                ErrorType::ConnectError,
                "PROXY protocol needs an IP upstream",
            );
        };
        let mut tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(inet))
            .await
            .or_err(ErrorType::ConnectTimedout, "connecting to the upstream")?
            .or_err(ErrorType::ConnectRefused, "connecting to the upstream")?;
        tcp.write_all(&self.header)
            .await
            .or_err(ErrorType::WriteError, "writing the PROXY protocol header")?;
        Ok(Stream::from(tcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_carries_both_addresses() {
        let client: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:8883".parse().unwrap();
        let bytes = header(client, server).unwrap();
        let parsed = ppp::v2::Header::try_from(bytes.as_slice()).unwrap();
        assert_eq!(parsed.addresses, ppp::v2::Addresses::from((client, server)));
        assert_eq!(parsed.command, Command::Proxy);
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let client: SocketAddr = "192.0.2.7:51000".parse().unwrap();
        let server: SocketAddr = "[::1]:8883".parse().unwrap();
        let parsed_bytes = header(client, server).unwrap();
        let parsed = ppp::v2::Header::try_from(parsed_bytes.as_slice()).unwrap();
        assert!(matches!(parsed.addresses, ppp::v2::Addresses::IPv6(_)));
    }
}
