//! The admin endpoints and the access log, after real traffic: `/metrics` counters move for
//! HTTP, gRPC with an error status, a failed handshake, and a reload success and failure, and
//! pass `promtool check metrics`; `/readyz` is 200 when serving and 503 while draining; `/certs`
//! shows a rotated certificate's new serial; the JSON access log line carries every field.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Proxy, curl, fingerprint, free_port, grpc_channel, local, poll_until, wait_for_served,
};
use nix::sys::signal::Signal;
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;
use tokio::io::AsyncWriteExt;

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    proxy: Proxy,
    port: u16,
    admin: u16,
    rest: testkit::http_upstream::HttpUpstream,
    _grpc: testkit::grpc_upstream::GrpcUpstream,
}

async fn setup() -> Setup {
    setup_with(None).await
}

/// Starts the proxy; with `held`, the listener's address is held by the test while it starts, so
/// the proxy is up but its listener is not bound until the test lets go.
async fn setup_with(held: Option<std::net::TcpListener>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let rest = testkit::http_upstream::start().await;
    let grpc = testkit::grpc_upstream::start().await;
    let port = match &held {
        Some(l) => l.local_addr().unwrap().port(),
        None => free_port(),
    };
    let admin = free_port();
    let cfg = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[access_log]
format = "json"
path = "{log}"
[reload]
interval = "1h"
settle = "200ms"

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
path_prefix = "/slow"
upstream = "rest"
[[listeners.routes]]
path_prefix = "/hello"
upstream = "rest"

[[upstreams]]
name = "rest"
address = "{rest}"
[[upstreams]]
name = "grpc"
address = "{grpc}"
protocol = "h2c"
"#,
        log = dir.path().join("access.log").display(),
        cert = files.cert.display(),
        key = files.key.display(),
        rest = rest.addr,
        grpc = grpc.addr,
    );
    let proxy = match held {
        Some(held) => {
            let proxy = Proxy::spawn(dir.path(), &cfg, &[]);
            let mut answer = (String::new(), String::new());
            poll_until("/readyz 503 while the address is held", || {
                answer = admin_get(admin, "/readyz");
                answer.0 == "503"
            });
            assert_eq!(answer.1, "listener https is not listening yet\n");
            drop(held);
            proxy
        }
        None => Proxy::start(dir.path(), &cfg, &[local(port), local(admin)]),
    };
    proxy.wait_for_log("certificate reloader running");
    Setup {
        dir,
        pki,
        proxy,
        port,
        admin,
        rest,
        _grpc: grpc,
    }
}

fn admin_get(admin: u16, path: &str) -> (String, String) {
    let out = curl(&[
        "--write-out",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{admin}{path}"),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_owned(), body.to_owned())
}

/// The value of the first sample line starting with `prefix` (name and labels).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

/// Real traffic of every kind, then one scrape: each counter moved as expected, and promtool
/// accepts the exposition.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_real_traffic_and_pass_promtool() {
    let s = setup().await;
    let ca = s.dir.path().join("ca.pem");
    // Series with labels known at start-up are there, at zero, before any traffic.
    let fresh = admin_get(s.admin, "/metrics").1;
    for series in [
        "smq_edge_tls_handshake_failures_total{listener=\"https\",reason=\"timeout\"}",
        "smq_edge_upstream_errors_total{kind=\"connect\",upstream=\"rest\"}",
        "smq_edge_reloads_total{result=\"failed\",store=\"listener https certificate\"}",
    ] {
        assert_eq!(sample(&fresh, series), 0.0, "{series}");
    }
    assert!(
        sample(
            &fresh,
            "smq_edge_last_reload_timestamp_seconds{store=\"listener https certificate\"}"
        ) > 1.7e9
    );
    // HTTP: two GETs through the /hello route.
    for _ in 0..2 {
        let out = curl(&[
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://localhost:{}/hello", s.port),
        ]);
        assert!(out.status.success());
    }
    // gRPC: one OK, one NOT_FOUND (grpc-status 5).
    let mut client = EchoClient::new(grpc_channel(local(s.port), &s.pki.ca_pem).await);
    client
        .unary(EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let missing = EchoRequest {
        message: "missing".into(),
        ..Default::default()
    };
    assert_eq!(
        client.unary(missing).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    // A failed handshake: a client that sends garbage instead of a ClientHello.
    let mut tcp = tokio::net::TcpStream::connect(local(s.port)).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(tcp);
    // A reload success, then a reload failure.
    let leaf = s.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    common::rotate_pair(
        &s.dir.path().join("chain.pem"),
        &s.dir.path().join("key.pem"),
        &leaf,
    );
    wait_for_served(
        local(s.port),
        &s.pki.ca_pem,
        &fingerprint(&leaf.der),
        Duration::from_secs(2),
    )
    .await;
    common::write_atomically(&s.dir.path().join("chain.pem"), "garbage");
    s.proxy.wait_for_log("reload failed");

    let mut metrics = String::new();
    poll_until("the failed handshake to be counted", || {
        metrics = admin_get(s.admin, "/metrics").1;
        metrics.contains("smq_edge_tls_handshake_failures_total{listener=\"https\"")
    });
    assert_eq!(
        sample(
            &metrics,
            "smq_edge_requests_total{listener=\"https\",method=\"GET\",route=\"/hello\",status=\"2xx\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "smq_edge_grpc_requests_total{grpc_status=\"5\",listener=\"https\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &metrics,
            "smq_edge_tls_handshakes_total{alpn=\"h2\",listener=\"https\",version=\"TLSv1.3\"}"
        ) >= 3.0
    );
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("smq_edge_tls_handshake_failures_total{listener=\"https\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failures >= 1.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "smq_edge_reloads_total{result=\"applied\",store=\"listener https certificate\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "smq_edge_reloads_total{result=\"failed\",store=\"listener https certificate\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &metrics,
            "smq_edge_last_reload_timestamp_seconds{store=\"listener https certificate\"}"
        ) > 1.7e9
    );
    assert!(
        sample(
            &metrics,
            "smq_edge_certificate_not_after_seconds{store=\"listener https certificate\"}"
        ) > 1.7e9
    );
    assert!(
        sample(
            &metrics,
            "smq_edge_request_duration_seconds_count{listener=\"https\"}"
        ) >= 4.0
    );
    assert!(sample(&metrics, "smq_edge_connections_total{listener=\"https\"}") >= 4.0);
    assert!(
        sample(
            &metrics,
            "smq_edge_bytes_total{direction=\"out\",listener=\"https\"}"
        ) > 0.0
    );
    assert_eq!(sample(&metrics, "smq_edge_build_info{version=\""), 1.0);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (install it: apt-get install prometheus)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/healthz` is 200; `/readyz` is 200 once the listener is bound, and 503 during the drain
/// while a request is still in flight.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_reports_ready_then_draining() {
    let mut s = setup().await;
    assert_eq!(admin_get(s.admin, "/healthz").0, "200");
    poll_until("/readyz 200", || admin_get(s.admin, "/readyz").0 == "200");
    let ca = s.dir.path().join("ca.pem");
    let port = s.port;
    let slow = std::thread::spawn(move || {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://localhost:{port}/slow"),
        ])
    });
    poll_until("the slow request to reach the upstream", || {
        s.rest.connections() >= 1
    });
    s.proxy.signal(Signal::SIGTERM);
    let mut answer = (String::new(), String::new());
    poll_until("/readyz 503 while draining", || {
        answer = admin_get(s.admin, "/readyz");
        answer.0 == "503"
    });
    assert!(answer.1.starts_with("draining"), "{answer:?}");
    assert!(slow.join().unwrap().status.success());
    assert_eq!(s.proxy.wait_exit().code(), Some(0));
}

/// `/readyz` is 503 naming the listener until it holds its address: the test holds the address
/// while the proxy starts (as a previous instance might during a restart), then lets go.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_until_the_listener_is_bound() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = setup_with(Some(held)).await;
    poll_until("/readyz 200 once the address is free", || {
        admin_get(s.admin, "/readyz").0 == "200"
    });
    let ca = s.dir.path().join("ca.pem");
    let out = curl(&[
        "--fail",
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://localhost:{}/hello", s.port),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("GET /hello"));
    assert!(s.proxy.log().contains("address in use; waiting for it"));
}

/// `/certs` lists each certificate with where it is used, names a bad file in `last_error` while
/// the served certificate stays listed, and shows the new serial after a rotation.
#[tokio::test(flavor = "multi_thread")]
async fn certs_inventory_shows_the_rotated_serial() {
    let s = setup().await;
    let before: serde_json::Value = serde_json::from_str(&admin_get(s.admin, "/certs").1).unwrap();
    let entry = &before[0];
    assert_eq!(entry["store"], "listener https certificate");
    assert_eq!(entry["used_by"][0], "listener https");
    assert_eq!(entry["certificate"]["sha256"], fingerprint(&s.pki.leaf_der));
    for field in [
        "subject",
        "sans",
        "issuer",
        "serial",
        "not_before",
        "not_after",
    ] {
        assert!(
            !entry["certificate"][field].is_null(),
            "{field} missing: {entry}"
        );
    }
    assert!(entry["last_error"].is_null(), "{entry}");
    // A bad file: the inventory names it in last_error and still lists the served certificate.
    let chain = s.dir.path().join("chain.pem");
    let good_chain = std::fs::read_to_string(&chain).unwrap();
    common::write_atomically(&chain, "not a certificate\n");
    let mut failed = serde_json::Value::Null;
    poll_until("/certs last_error after a bad file", || {
        failed = serde_json::from_str(&admin_get(s.admin, "/certs").1).unwrap();
        failed[0]["last_error"].is_string()
    });
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("chain.pem"), "{error}");
    assert_eq!(failed[0]["certificate"], entry["certificate"]);
    common::write_atomically(&chain, &good_chain);
    s.proxy.wait_for_log("the earlier reload error is cleared");
    let leaf = s.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    common::rotate_pair(&chain, &s.dir.path().join("key.pem"), &leaf);
    wait_for_served(
        local(s.port),
        &s.pki.ca_pem,
        &fingerprint(&leaf.der),
        Duration::from_secs(2),
    )
    .await;
    let after: serde_json::Value = serde_json::from_str(&admin_get(s.admin, "/certs").1).unwrap();
    assert_eq!(after[0]["certificate"]["sha256"], fingerprint(&leaf.der));
    assert_ne!(
        after[0]["certificate"]["serial"],
        entry["certificate"]["serial"]
    );
    assert!(after[0]["last_reload"].is_string(), "{}", after[0]);
    assert!(after[0]["last_error"].is_null(), "{}", after[0]);
}

/// A JSON access log line per request, with every field.
#[tokio::test(flavor = "multi_thread")]
async fn access_log_line_carries_every_field() {
    let s = setup().await;
    let ca = s.dir.path().join("ca.pem");
    let out = curl(&[
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://localhost:{}/hello/log?x=1", s.port),
    ]);
    assert!(out.status.success());
    let log_path = s.dir.path().join("access.log");
    let v = access_log_line(&log_path, "/hello/log");
    assert_eq!(v["listener"], "https");
    assert_eq!(v["sni"], "localhost");
    assert_eq!(v["tls_version"], "TLSv1.3");
    assert_eq!(v["alpn"], "h2");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/hello/log?x=1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["upstream"], "rest");
    assert!(
        v["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{v}"
    );
    assert!(v["bytes_out"].as_u64().unwrap() > 0, "{v}");
    assert!(v["duration_seconds"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["route"], "/hello");
    assert_eq!(v["bytes_in"], 0);
    assert!(v["grpc_status"].is_null(), "{v}");
    assert!(v["time"].is_string(), "{v}");

    // A gRPC call's line carries its grpc-status and the request body's bytes.
    let mut client = EchoClient::new(grpc_channel(local(s.port), &s.pki.ca_pem).await);
    client
        .unary(EchoRequest {
            message: "logged".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let grpc = access_log_line(&log_path, "/testkit.echo.Echo/Unary");
    assert_eq!(grpc["grpc_status"], "0", "{grpc}");
    assert_eq!(grpc["route"], "/testkit.echo.Echo", "{grpc}");
    assert_eq!(grpc["upstream"], "grpc", "{grpc}");
    assert_eq!(grpc["method"], "POST", "{grpc}");
    assert!(grpc["bytes_in"].as_u64().unwrap() > 0, "{grpc}");
}

/// The first JSON access log line in `path` that contains `needle`, once it is written.
fn access_log_line(path: &std::path::Path, needle: &str) -> serde_json::Value {
    let mut line = String::new();
    poll_until(&format!("the access log line for {needle}"), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        line = text
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_owned();
        !line.is_empty()
    });
    serde_json::from_str(&line).unwrap()
}
