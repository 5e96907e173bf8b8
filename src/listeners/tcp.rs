//! The tcp listener's path (MQTT over TLS, 8883 → 1883): accept (TLS terminated by the
//! listener), connect the one upstream (plaintext or TLS, with a PROXY v2 header if asked),
//! then copy bytes both ways until both sides have closed, or until the connection has been
//! silent for `idle_timeout`. Half-close is passed on: a side that finishes writing gets its
//! peer's write side shut down, while the other direction keeps flowing. On shutdown every
//! session is closed at once (outcome `shutdown`) and logged before the process exits: a
//! byte stream has no request boundary to drain to, and an MQTT client reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::accept::Handshakes;
use super::stats::ListenerStats;
use crate::access_log::{AccessLog, SessionTls, SessionView, record_session};
use crate::shutdown::InFlight;
use crate::upstream::UpstreamRuntime;

/// Size of each direction's copy buffer.
const BUFFER: usize = 16 * 1024;

/// One tcp listener.
pub struct TcpEdge {
    /// Listener name, for logs.
    pub listener: String,
    /// Where every connection goes.
    pub upstream: Arc<UpstreamRuntime>,
    /// Connects (and TLS-handshakes) upstream.
    pub connector: TransportConnector,
    /// How long a connection may be silent in both directions.
    pub idle_timeout: Duration,
    /// Connection and byte counters.
    pub stats: Arc<ListenerStats>,
    /// Where session lines go, if enabled.
    pub access_log: Option<AccessLog>,
    /// SNI of each client's handshake.
    pub handshakes: Arc<Handshakes>,
    /// Counts open sessions, so shutdown waits for their log lines.
    pub in_flight: InFlight,
}

#[async_trait]
impl ServerApp for TcpEdge {
    async fn process_new(
        self: &Arc<Self>,
        downstream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _in_flight = self.in_flight.enter();
        let digest = downstream.get_socket_digest();
        let client = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let server = digest
            .as_ref()
            .and_then(|d| d.local_addr())
            .and_then(|a| a.as_inet())
            .copied();
        let upstream_name = &self.upstream.config.name;
        let started = Instant::now();
        let tls = downstream.get_ssl_digest().map(|d| SessionTls {
            sni: client.and_then(|c| self.handshakes.sni(&c)),
            version: crate::metrics::tls_version(&d.version),
            alpn: match downstream.selected_alpn_proto() {
                Some(ALPN::H2) => "h2",
                Some(ALPN::H1) => "http/1.1",
                _ => "none",
            },
        });
        let session = |outcome, bytes| SessionView {
            upstream: upstream_name,
            client,
            outcome,
            bytes,
            started,
            tls: tls.as_ref(),
        };
        let peer = self.upstream.peer(client, server);
        let upstream = match self.connector.new_stream(&peer).await {
            Ok(s) => s,
            Err(e) => {
                record_session(
                    &self.stats,
                    self.access_log.as_ref(),
                    session("upstream refused", (0, 0)),
                );
                // Dropping the client's stream closes its connection right away.
                tracing::error!(listener = %self.listener, upstream = %upstream_name, client = ?client, error = %e, "cannot connect upstream; closing the client connection");
                self.stats
                    .metrics
                    .upstream_errors
                    .with_label_values(&[
                        upstream_name.as_str(),
                        crate::respond::upstream_error_kind(&e),
                    ])
                    .inc();
                return None;
            }
        };
        let (outcome, bytes) = relay(
            downstream,
            upstream,
            self.idle_timeout,
            &self.stats,
            shutdown.clone(),
        )
        .await;
        tracing::debug!(listener = %self.listener, upstream = %upstream_name, client = ?client, outcome, "tcp session ended");
        record_session(
            &self.stats,
            self.access_log.as_ref(),
            session(outcome, bytes),
        );
        None
    }
}

/// Copies both ways until both directions are finished, the connection is idle for `idle`, or
/// the process shuts down.
async fn relay(
    downstream: Stream,
    upstream: Stream,
    idle: Duration,
    stats: &ListenerStats,
    mut shutdown: ShutdownWatch,
) -> (&'static str, (u64, u64)) {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (sent_in, sent_out) = (AtomicU64::new(0), AtomicU64::new(0));
    let (down_read, down_write) = tokio::io::split(downstream);
    let (up_read, up_write) = tokio::io::split(upstream);
    let inbound = copy_half(
        down_read,
        up_write,
        (&stats.bytes_in, &sent_in),
        &last,
        start,
    );
    let outbound = copy_half(
        up_read,
        down_write,
        (&stats.bytes_out, &sent_out),
        &last,
        start,
    );
    let watchdog = async {
        loop {
            let silent = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if silent >= idle {
                return;
            }
            tokio::time::sleep(idle - silent).await;
        }
    };
    let outcome = tokio::select! {
        (a, b) = futures::future::join(inbound, outbound) => match (a, b) {
            (Ok(()), Ok(())) => "closed",
            _ => "reset",
        },
        () = watchdog => "idle timeout",
        // Dropping both streams closes both connections.
        _ = shutdown.wait_for(|stopping| *stopping) => "shutdown",
    };
    (outcome, (sent_in.into_inner(), sent_out.into_inner()))
}

/// One direction: read until EOF, then shut the other side's write half (half-close).
async fn copy_half<R, W>(
    mut from: R,
    mut to: W,
    (counter, session): (&IntCounter, &AtomicU64),
    last: &AtomicU64,
    start: Instant,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        counter.inc_by(n as u64);
        session.fetch_add(n as u64, Ordering::Relaxed);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}
