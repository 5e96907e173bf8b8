//! An h2c gRPC upstream: the `Echo` service (unary, server, client and bidi streams, and a
//! trailers-only NOT_FOUND) plus `grpc.health.v1.Health` reporting SERVING.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::echo::echo_server::{Echo, EchoServer};
use crate::echo::{EchoReply, EchoRequest};

/// A running gRPC upstream; stops when dropped.
pub struct GrpcUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcUpstream {
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the upstream on `127.0.0.1:0`.
pub async fn start() -> GrpcUpstream {
    start_on("127.0.0.1:0".parse().expect("loopback")).await
}

/// Starts the upstream on `addr`.
pub async fn start_on(addr: SocketAddr) -> GrpcUpstream {
    serve(addr, None).await
}

/// Starts a TLS upstream on `127.0.0.1:0` with the given certificate chain and key; with
/// `client_ca`, it requires a client certificate issued by that CA.
pub async fn start_tls(chain_pem: &str, key_pem: &str, client_ca: Option<&str>) -> GrpcUpstream {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(chain_pem, key_pem));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    serve("127.0.0.1:0".parse().expect("loopback"), Some(tls)).await
}

async fn serve(addr: SocketAddr, tls: Option<ServerTlsConfig>) -> GrpcUpstream {
    let listener = TcpListener::bind(addr).await.expect("bind grpc upstream");
    let addr = listener.local_addr().expect("grpc upstream addr");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoServer<EchoService>>().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let incoming = TcpListenerStream::new(listener).map(move |conn| {
        if conn.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        conn
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("server tls config");
    }
    let task = tokio::spawn(async move {
        let _ = builder
            .add_service(health)
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming(incoming)
            .await;
    });
    GrpcUpstream {
        addr,
        connections,
        task,
    }
}

/// The `Echo` implementation.
pub struct EchoService;

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        if req.get_ref().message == "peer-cert" {
            // Hex DER of the client certificate the caller presented, or "none".
            let der = req.peer_certs().and_then(|c| c.first().map(|c| c.to_vec()));
            let message = der.map_or_else(
                || "none".to_owned(),
                |d| d.iter().map(|b| format!("{b:02x}")).collect(),
            );
            return Ok(Response::new(EchoReply { message }));
        }
        let message = req.into_inner().message;
        if message == "missing" {
            return Err(Status::not_found("no such thing: missing"));
        }
        Ok(Response::new(EchoReply { message }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let EchoRequest {
            message,
            count,
            interval_ms,
        } = req.into_inner();
        let pause = std::time::Duration::from_millis(u64::from(interval_ms));
        let replies = tokio_stream::iter(0..count).then(move |i| {
            let message = format!("{message}-{i}");
            async move {
                if i > 0 && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                Ok(EchoReply { message })
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn client_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = req.into_inner();
        let mut parts = Vec::new();
        while let Some(item) = stream.next().await {
            parts.push(item?.message);
        }
        Ok(Response::new(EchoReply {
            message: parts.join(","),
        }))
    }

    type BidiStreamStream = ReplyStream;

    async fn bidi_stream(
        &self,
        req: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStreamStream>, Status> {
        let stream = req.into_inner();
        let out = stream.map(|item| item.map(|r| EchoReply { message: r.message }));
        Ok(Response::new(Box::pin(out)))
    }
}
