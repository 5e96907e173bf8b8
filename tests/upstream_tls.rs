//! TLS re-originated to upstreams: a tonic client over TLS through the proxy to tonic gRPC
//! servers that speak TLS with certificates from their own test CA. Each verification mode is
//! checked against the behaviour that defines it, and mutual TLS against a server that requires
//! a client certificate.

mod common;

use std::path::Path;

use common::{Proxy, free_port, grpc_channel, local};
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;

/// One listener → one upstream with the given `[upstreams.tls]` body.
fn section(
    name: &str,
    port: u16,
    edge: &Path,
    upstream: std::net::SocketAddr,
    tls: &str,
) -> String {
    format!(
        r#"
[[listeners]]
name = "{name}"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{dir}/edge-chain.pem"
key = "{dir}/edge-key.pem"
[[listeners.routes]]
upstream = "{name}"

[[upstreams]]
name = "{name}"
address = "{upstream}"
protocol = "h2c"
[upstreams.tls]
{tls}
"#,
        dir = edge.display(),
    )
}

async fn unary(port: u16, ca: &str, message: &str) -> Result<String, tonic::Status> {
    let channel = grpc_channel(local(port), ca).await;
    EchoClient::new(channel)
        .unary(EchoRequest {
            message: message.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().message)
}

fn hex(der: &[u8]) -> String {
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every mode against the upstream it should accept or refuse.
#[tokio::test(flavor = "multi_thread")]
async fn verification_modes_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let edge = Pki::localhost();
    edge.write(d, "edge-");
    let up_pki = Pki::localhost();
    up_pki.write(d, "up-");
    Pki::localhost().write(d, "wrong-");
    let client_pki = Pki::localhost();
    let client = client_pki.client_leaf("smq-edge");
    std::fs::write(d.join("client-chain.pem"), &client.chain_pem).unwrap();
    std::fs::write(d.join("client-key.pem"), &client.key_pem).unwrap();

    let plain = testkit::grpc_upstream::start_tls(&up_pki.chain_pem, &up_pki.key_pem, None).await;
    let mutual = testkit::grpc_upstream::start_tls(
        &up_pki.chain_pem,
        &up_pki.key_pem,
        Some(&client_pki.ca_pem),
    )
    .await;
    let ca = |p: &str| format!("ca = \"{}\"", d.join(format!("{p}ca.pem")).display());
    let cases = [
        (
            "full-ok",
            plain.addr,
            format!("mode = \"verify-full\"\n{}", ca("up-")),
        ),
        (
            "full-wrong-ca",
            plain.addr,
            format!("mode = \"verify-full\"\n{}", ca("wrong-")),
        ),
        (
            "full-bad-name",
            plain.addr,
            format!(
                "mode = \"verify-full\"\nsni = \"wrong.example\"\n{}",
                ca("up-")
            ),
        ),
        (
            "ca-bad-name",
            plain.addr,
            format!(
                "mode = \"verify-ca\"\nsni = \"wrong.example\"\n{}",
                ca("up-")
            ),
        ),
        ("require-any", plain.addr, "mode = \"required\"".to_owned()),
        (
            "mtls",
            mutual.addr,
            format!(
                "mode = \"verify-full\"\n{}\ncert = \"{}\"\nkey = \"{}\"",
                ca("up-"),
                d.join("client-chain.pem").display(),
                d.join("client-key.pem").display()
            ),
        ),
        (
            "mtls-missing",
            mutual.addr,
            format!("mode = \"verify-full\"\n{}", ca("up-")),
        ),
    ];
    let mut cfg = String::new();
    let mut ports = std::collections::HashMap::new();
    for (name, addr, tls) in &cases {
        let port = free_port();
        cfg += &section(name, port, d, *addr, tls);
        ports.insert(*name, port);
    }
    let ready: Vec<_> = ports.values().map(|p| local(*p)).collect();
    let proxy = Proxy::start(d, &cfg, &ready);

    assert_eq!(
        unary(ports["full-ok"], &edge.ca_pem, "hi").await.unwrap(),
        "hi"
    );
    assert_eq!(
        unary(ports["ca-bad-name"], &edge.ca_pem, "hi")
            .await
            .unwrap(),
        "hi",
        "verify-ca must not check the name"
    );
    assert_eq!(
        unary(ports["require-any"], &edge.ca_pem, "hi")
            .await
            .unwrap(),
        "hi",
        "require must accept any certificate"
    );
    for refused in ["full-wrong-ca", "full-bad-name", "mtls-missing"] {
        let err = unary(ports[refused], &edge.ca_pem, "hi").await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{refused}: {err:?}");
        assert!(
            err.message()
                .contains(&format!("upstream {refused} unavailable")),
            "{refused}: {err:?}"
        );
        proxy.wait_for_log(&format!("upstream=\"{refused}\""));
    }
    let seen = unary(ports["mtls"], &edge.ca_pem, "peer-cert")
        .await
        .unwrap();
    assert_eq!(
        seen,
        hex(&client.der),
        "the upstream did not see the configured client certificate"
    );
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains("upstream=\"full-wrong-ca\""))
        .unwrap();
    assert!(line.contains("ERROR"), "{line}");
}

/// The CA bundle reloads like a certificate: a changed bundle is used for new upstream
/// connections (pooled ones made under the old bundle are not reused), a wrong bundle makes new
/// connections fail, an empty bundle is refused with the old one kept, and a good one restores
/// service.
#[tokio::test(flavor = "multi_thread")]
async fn ca_bundle_reload_applies_to_new_upstream_connections() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let edge = Pki::localhost();
    edge.write(d, "edge-");
    let up_pki = Pki::localhost();
    let wrong = Pki::localhost();
    let bundle = d.join("bundle.pem");
    std::fs::write(&bundle, &up_pki.ca_pem).unwrap();
    let upstream =
        testkit::grpc_upstream::start_tls(&up_pki.chain_pem, &up_pki.key_pem, None).await;
    let port = free_port();
    let tls = format!("mode = \"verify-full\"\nca = \"{}\"", bundle.display());
    let cfg = format!(
        "[reload]\ninterval = \"1h\"\nsettle = \"200ms\"\n{}",
        section("clients", port, d, upstream.addr, &tls)
    );
    let proxy = Proxy::start(d, &cfg, &[local(port)]);
    proxy.wait_for_log("certificate reloader running");

    assert_eq!(unary(port, &edge.ca_pem, "one").await.unwrap(), "one");
    assert_eq!(upstream.connections(), 1);
    let reloads = |p: &Proxy| {
        p.log()
            .matches("reloaded store=\"upstream clients CA bundle\"")
            .count()
    };
    let write = |contents: &str| {
        let tmp = d.join("bundle.tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &bundle).unwrap();
    };

    // Same trust, new content: applied, and the next call opens a new upstream connection.
    write(&format!("{}{}", up_pki.ca_pem, wrong.ca_pem));
    common::poll_until("CA bundle reload", || reloads(&proxy) == 1);
    assert_eq!(unary(port, &edge.ca_pem, "two").await.unwrap(), "two");
    assert_eq!(
        upstream.connections(),
        2,
        "a pooled connection from the old bundle was reused"
    );

    // A bundle that does not trust the upstream: new connections are refused.
    write(&wrong.ca_pem);
    common::poll_until("CA bundle reload", || reloads(&proxy) == 2);
    let err = unary(port, &edge.ca_pem, "three").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    // An empty bundle is refused; the last good (wrong) bundle stays.
    write("");
    proxy.wait_for_log(&format!("{}: no PEM certificate found", bundle.display()));
    assert_eq!(
        unary(port, &edge.ca_pem, "four").await.unwrap_err().code(),
        tonic::Code::Unavailable
    );

    // The right bundle again restores service.
    write(&up_pki.ca_pem);
    common::poll_until("CA bundle reload", || reloads(&proxy) == 3);
    assert_eq!(unary(port, &edge.ca_pem, "five").await.unwrap(), "five");
}
