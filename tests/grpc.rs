//! A tonic client over TLS through the proxy to a tonic h2c server: every call shape, trailers
//! (including trailers-only errors), health checking, and h2c multiplexing upstream.

mod common;

use common::{Proxy, free_port, grpc_channel, local};
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Setup {
    _dir: tempfile::TempDir,
    _proxy: Proxy,
    upstream: testkit::grpc_upstream::GrpcUpstream,
    channel: tonic::transport::Channel,
    /// The proxy's listener and the CA its certificate chains to, for more client connections.
    addr: std::net::SocketAddr,
    ca_pem: String,
}

/// Worker threads of the proxy under test; each has its own upstream pool.
const WORKERS: usize = 2;

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let upstream = testkit::grpc_upstream::start().await;
    let port = free_port();
    let cfg = format!(
        r#"
[server]
threads = {WORKERS}

[[listeners]]
name = "clients"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "clients"

[[upstreams]]
name = "clients"
address = "{addr}"
protocol = "h2c"
"#,
        cert = files.cert.display(),
        key = files.key.display(),
        addr = upstream.addr,
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    let channel = grpc_channel(local(port), &pki.ca_pem).await;
    Setup {
        _dir: dir,
        _proxy: proxy,
        upstream,
        channel,
        addr: local(port),
        ca_pem: pki.ca_pem.clone(),
    }
}

fn req(message: &str, count: u32) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        count,
        ..Default::default()
    }
}

/// Unary call: the reply comes back through the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn unary_call_round_trips() {
    let s = setup().await;
    let reply = EchoClient::new(s.channel.clone())
        .unary(req("hi", 0))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "hi");
}

/// A trailers-only NOT_FOUND keeps its status and message.
#[tokio::test(flavor = "multi_thread")]
async fn trailers_only_not_found_reaches_the_client() {
    let s = setup().await;
    let err = EchoClient::new(s.channel.clone())
        .unary(req("missing", 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "no such thing: missing");
}

/// Server streaming: every message arrives in order, then the OK trailers.
#[tokio::test(flavor = "multi_thread")]
async fn server_stream_delivers_every_message() {
    let s = setup().await;
    let mut stream = EchoClient::new(s.channel.clone())
        .server_stream(req("m", 50))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(reply) = stream.message().await.unwrap() {
        got.push(reply.message);
    }
    let want: Vec<String> = (0..50).map(|i| format!("m-{i}")).collect();
    assert_eq!(got, want);
    assert!(
        stream.trailers().await.unwrap().is_some(),
        "trailers missing"
    );
}

/// Client streaming: the server sees every request message.
#[tokio::test(flavor = "multi_thread")]
async fn client_stream_delivers_every_message() {
    let s = setup().await;
    let outbound = tokio_stream::iter(["a", "b", "c"].map(|m| req(m, 0)));
    let reply = EchoClient::new(s.channel.clone())
        .client_stream(outbound)
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "a,b,c");
}

/// Bidi streaming: replies arrive while the request stream is still open.
#[tokio::test(flavor = "multi_thread")]
async fn bidi_stream_echoes_interactively() {
    let s = setup().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = EchoClient::new(s.channel.clone())
        .bidi_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        tx.send(req(&format!("ping{i}"), 0)).await.unwrap();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reply per message");
        assert_eq!(reply.message, format!("ping{i}"));
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}

/// grpc.health.v1.Health/Check through the proxy reports SERVING.
#[tokio::test(flavor = "multi_thread")]
async fn health_check_reports_serving() {
    let s = setup().await;
    let resp = HealthClient::new(s.channel.clone())
        .check(HealthCheckRequest {
            service: "testkit.echo.Echo".into(),
        })
        .await
        .unwrap();
    assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);
}

/// A cold burst of concurrent calls from many client connections (as h2load's 64 × 10) waits
/// for one upstream connection per worker instead of each call opening its own while the first
/// is still connecting; and the client connections are spread over both workers (each worker
/// has its own pool, so one upstream connection each), not all taken by whichever woke first.
#[tokio::test(flavor = "multi_thread")]
async fn cold_burst_shares_one_upstream_connection_per_worker() {
    let s = setup().await;
    // Connected all at once, as a load generator (or every client after a restart) does.
    let channels =
        futures::future::join_all((0..16).map(|_| grpc_channel(s.addr, &s.ca_pem))).await;
    let calls = channels.iter().flat_map(|ch| {
        (0..6).map(move |i| {
            let mut c = EchoClient::new(ch.clone());
            async move { c.unary(req(&i.to_string(), 0)).await }
        })
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    // The kernel hashes each connection to a worker: all 16 on one has odds of 2 in 65,536.
    assert_eq!(
        s.upstream.connections(),
        WORKERS,
        "96 calls over 16 client connections, {WORKERS} workers"
    );
}

/// Many calls, sequential and concurrent, share few multiplexed h2c upstream connections.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_h2c_connection_is_multiplexed() {
    let s = setup().await;
    let client = EchoClient::new(s.channel.clone());
    for i in 0..10 {
        client.clone().unary(req(&i.to_string(), 0)).await.unwrap();
    }
    assert_eq!(s.upstream.connections(), 1);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let calls = (0..50).map(|i| {
            let mut c = client.clone();
            async move { c.unary(req(&i.to_string(), 0)).await }
        });
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        seen.push(s.upstream.connections());
    }
    // One client connection is served by one worker, whose pool holds one connection.
    assert_eq!(seen, [1; 5], "upstream connections after each burst of 50");
}
