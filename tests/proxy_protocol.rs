//! PROXY protocol v2 towards an upstream: the upstream sees the client's own source address,
//! and half-close passes through a tcp listener in both directions.

mod common;

use common::{Proxy, free_port, local, tls_stream};
use testkit::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client's data and its end-of-stream cross the proxy; the upstream answers with the source
/// address from the PROXY v2 header, which is the client's own address.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_sees_the_client_address_and_half_close_passes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let upstream = testkit::proxy_v2_upstream::start().await;
    let port = free_port();
    let cfg = format!(
        r#"
[[listeners]]
name = "mqtt"
listen = "127.0.0.1:{port}"
protocol = "tcp"
idle_timeout = "30s"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "broker"

[[upstreams]]
name = "broker"
address = "{addr}"
protocol = "tcp"
proxy_protocol = "v2"
"#,
        cert = files.cert.display(),
        key = files.key.display(),
        addr = upstream.addr,
    );
    let _proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    let mut tls = tls_stream(local(port), &pki.ca_pem, &[]).await;
    let client_addr = tls.get_ref().0.local_addr().unwrap();
    tls.write_all(b"ping").await.unwrap();
    // Half-close: the client is done writing but still reads.
    tls.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(common::DEADLINE, tls.read_to_string(&mut answer))
        .await
        .expect("the upstream's answer and its close came back")
        .unwrap();
    assert_eq!(answer, format!("source {client_addr}\nping"));
}
