//! Rotation under load: HTTP/1.1, HTTP/2 and gRPC clients keep sending requests, on long-lived
//! and on fresh connections, while the certificate is rotated 50 times. No request may fail, and
//! every rotation must be seen by a new handshake.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Proxy, fingerprint, free_port, local, wait_for_served};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;

const ROTATIONS: usize = 50;
/// Requests sent on one connection before the client reconnects (a fresh handshake).
const REQUESTS_PER_CONNECTION: usize = 25;

/// Outcome counters shared by a client loop and the test.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn record<E: std::fmt::Display>(&self, r: Result<(), E>) {
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert(e.to_string());
            }
        }
    }
}

/// One client connection, HTTP/1.1 or HTTP/2.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        req: hyper::Request<Empty<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

/// HTTP/1.1 or HTTP/2 requests through the proxy, reconnecting every few requests.
async fn http_client(
    addr: SocketAddr,
    ca: String,
    h2: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let connector = tokio_rustls::TlsConnector::from(common::client_config(&ca, &[alpn]));
    while !stop.load(Ordering::Relaxed) {
        let result: Result<(), String> = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let io = TokioIo::new(tls);
            let mut sender = if h2 {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H2(sender)
            } else {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Sender::H1(sender)
            };
            for _ in 0..REQUESTS_PER_CONNECTION {
                let req = hyper::Request::get(format!("https://localhost:{}/hello", addr.port()))
                    .header("host", format!("localhost:{}", addr.port()))
                    .body(Empty::new())
                    .unwrap();
                let r: Result<(), String> = async {
                    let resp = sender.send(req).await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    if status != 200 || !body.starts_with(b"GET /hello") {
                        return Err(format!(
                            "status {status}, body {:?}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    Ok(())
                }
                .await;
                tally.record(r);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tally.record(Err(e));
        }
    }
}

/// gRPC unary calls, on a new channel (new handshake) every few calls.
async fn grpc_client(addr: SocketAddr, ca: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::Relaxed) {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .domain_name("localhost");
        let channel = match tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tally.record(Err(format!("grpc connect: {e:?}")));
                continue;
            }
        };
        let mut client = EchoClient::new(channel);
        for i in 0..REQUESTS_PER_CONNECTION {
            let r = client
                .unary(EchoRequest {
                    message: i.to_string(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    (r.into_inner().message == i.to_string())
                        .then_some(())
                        .ok_or_else(|| "wrong reply".to_owned())
                });
            tally.record(r);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 50 rotations while HTTP/1.1, HTTP/2 and gRPC clients run: zero failed requests, every
/// rotation seen by a new handshake within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.chain_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    let rest = testkit::http_upstream::start().await;
    let grpc = testkit::grpc_upstream::start().await;
    let port = free_port();
    let cfg = format!(
        r#"
[reload]
interval = "1h"
[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
path_prefix = "/testkit.echo.Echo"
upstream = "grpc"
[[listeners.routes]]
upstream = "rest"
[[upstreams]]
name = "rest"
address = "{rest}"
[[upstreams]]
name = "grpc"
address = "{grpc}"
protocol = "h2c"
"#,
        cert = cert.display(),
        key = key.display(),
        rest = rest.addr,
        grpc = grpc.addr,
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    proxy.wait_for_log("certificate reloader running");
    let addr = local(port);
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<(&str, Arc<Tally>)> = vec![
        ("http/1.1", Arc::default()),
        ("h2", Arc::default()),
        ("grpc", Arc::default()),
    ];
    let mut clients = Vec::new();
    for (kind, tally) in &tallies {
        let (ca, stop, tally) = (pki.ca_pem.clone(), stop.clone(), tally.clone());
        clients.push(match *kind {
            "http/1.1" => tokio::spawn(http_client(addr, ca, false, stop, tally)),
            "h2" => tokio::spawn(http_client(addr, ca, true, stop, tally)),
            _ => tokio::spawn(grpc_client(addr, ca, stop, tally)),
        });
    }
    let mut slowest = Duration::ZERO;
    let mut rss = Vec::new();
    for i in 0..ROTATIONS {
        let leaf = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
        common::rotate_pair(&cert, &key, &leaf);
        let took = wait_for_served(
            addr,
            &pki.ca_pem,
            &fingerprint(&leaf.der),
            Duration::from_secs(2),
        )
        .await;
        slowest = slowest.max(took);
        if i == 9 || i == ROTATIONS - 1 {
            rss.push(rss_kib(proxy_pid(&proxy)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let reloads = proxy.log().matches("reloaded store=").count();
    eprintln!(
        "rotations: {ROTATIONS}, reloads logged: {reloads}, slowest detection: {slowest:?}, RSS after 10 / {ROTATIONS} rotations: {} / {} KiB",
        rss[0], rss[1]
    );
    for (kind, tally) in &tallies {
        let (ok, failed) = (
            tally.ok.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
        );
        eprintln!("{kind}: {ok} requests ok, {failed} failed");
        assert_eq!(
            failed,
            0,
            "{kind}: first error: {:?}",
            tally.first_error.lock().unwrap()
        );
        assert!(ok > 0, "{kind}: no request completed");
    }
    assert_eq!(reloads, ROTATIONS);
}

fn proxy_pid(proxy: &Proxy) -> u32 {
    proxy.pid()
}
