//! A plaintext HTTP/1.1 upstream that answers every request with a report of what it received:
//! the first line is `METHOD TARGET`, then one `name: value` line per header, in order.
//! A path starting with `/slow` is answered after one second, to keep a request in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running upstream; stops when dropped.
pub struct HttpUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpUpstream {
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the upstream on `127.0.0.1:0`.
pub async fn start() -> HttpUpstream {
    start_on("127.0.0.1:0".parse().expect("loopback")).await
}

/// Starts the upstream on `addr`.
pub async fn start_on(addr: SocketAddr) -> HttpUpstream {
    let listener = TcpListener::bind(addr).await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(report))
                    .await;
            });
        }
    });
    HttpUpstream {
        addr,
        connections,
        task,
    }
}

async fn report(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path().starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut text = format!("{} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !body.is_empty() {
        text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    }
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .header("x-upstream", "testkit")
        .body(Full::new(Bytes::from(text)))
        .expect("response"))
}
