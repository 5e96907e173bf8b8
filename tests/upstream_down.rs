//! An upstream that refuses connections: HTTP clients get a quick 502, gRPC clients get
//! UNAVAILABLE with a message (a trailers-only response, not a bare stream reset).

mod common;

use common::{Proxy, curl, free_port, grpc_channel, local};
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;

/// Both upstreams point at a port nothing listens on.
fn setup() -> (tempfile::TempDir, Proxy, Pki, u16) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let port = free_port();
    let dead = free_port();
    let cfg = format!(
        r#"
[[listeners]]
name = "edge"
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
address = "127.0.0.1:{dead}"
[[upstreams]]
name = "grpc"
address = "127.0.0.1:{dead}"
protocol = "h2c"
"#,
        cert = files.cert.display(),
        key = files.key.display(),
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    (dir, proxy, pki, port)
}

/// curl (HTTP/1.1 and HTTP/2) gets 502, and the proxy logs the failure with the upstream name.
#[tokio::test(flavor = "multi_thread")]
async fn http_client_gets_502() {
    let (dir, proxy, _pki, port) = setup();
    let ca = dir.path().join("ca.pem");
    for flag in ["--http1.1", "--http2"] {
        let out = curl(&[
            flag,
            "--cacert",
            ca.to_str().unwrap(),
            "--write-out",
            "%{http_code}",
            "--output",
            "/dev/null",
            &format!("https://localhost:{port}/anything"),
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "502", "{flag}");
    }
    proxy.wait_for_log("upstream=\"rest\" status=502");
}

/// A tonic client gets UNAVAILABLE with a message naming the upstream, and the proxy's log line
/// gives that grpc-status (the client saw HTTP 200, not 502).
#[tokio::test(flavor = "multi_thread")]
async fn grpc_client_gets_unavailable_with_a_message() {
    let (_dir, proxy, pki, port) = setup();
    let channel = grpc_channel(local(port), &pki.ca_pem).await;
    let err = EchoClient::new(channel)
        .unary(EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("upstream grpc unavailable"),
        "{err:?}"
    );
    proxy.wait_for_log("upstream=\"grpc\" grpc_status=14");
}
