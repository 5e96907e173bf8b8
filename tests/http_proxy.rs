//! HTTP/1.1 and HTTP/2 clients (curl) over TLS through the proxy to a real plaintext HTTP/1.1
//! server: status, body, negotiated protocol, forwarding headers, routing and connection reuse.

mod common;

use common::{Proxy, curl, free_port, local};
use testkit::pki::Pki;

/// A TLS listener with a stripping `/api/` route and a catch-all, both to one HTTP/1.1 upstream.
fn config(port: u16, cert: &str, key: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
protocol = "http"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
path_prefix = "/api/"
strip_prefix = true
upstream = "rest"
[[listeners.routes]]
path_prefix = "/hello"
upstream = "rest"

[[upstreams]]
name = "rest"
address = "{upstream}"
protocol = "http1"
"#
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    _proxy: Proxy,
    upstream: testkit::http_upstream::HttpUpstream,
    ca: String,
    port: u16,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::localhost().write(dir.path(), "");
    let upstream = testkit::http_upstream::start().await;
    let port = free_port();
    let cfg = config(
        port,
        files.cert.to_str().unwrap(),
        files.key.to_str().unwrap(),
        upstream.addr,
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    Setup {
        ca: files.ca.to_str().unwrap().to_owned(),
        _dir: dir,
        _proxy: proxy,
        upstream,
        port,
    }
}

fn get(s: &Setup, version_flag: &str, path: &str) -> (String, String, String) {
    let url = format!("https://localhost:{}{path}", s.port);
    let out = curl(&[
        version_flag,
        "--cacert",
        &s.ca,
        "--write-out",
        "\n%{http_code} %{http_version}",
        &url,
    ]);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, meta) = text.rsplit_once('\n').unwrap();
    let (code, version) = meta.split_once(' ').unwrap();
    (code.to_owned(), version.to_owned(), body.to_owned())
}

/// curl over HTTP/1.1 (ALPN http/1.1) gets the upstream's answer, with Host kept and the
/// X-Forwarded-For, X-Forwarded-Proto and X-Real-IP headers set.
#[tokio::test(flavor = "multi_thread")]
async fn http1_client_reaches_upstream_with_forwarding_headers() {
    let s = setup().await;
    let (code, version, body) = get(&s, "--http1.1", "/hello/world?x=1");
    assert_eq!((code.as_str(), version.as_str()), ("200", "1.1"));
    assert!(body.starts_with("GET /hello/world?x=1\n"), "{body}");
    assert!(
        body.contains(&format!("host: localhost:{}\n", s.port)),
        "{body}"
    );
    assert!(body.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");
    assert!(body.contains("x-real-ip: 127.0.0.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
}

/// curl over HTTP/2 (ALPN h2) is translated to HTTP/1.1 upstream; :authority becomes Host.
#[tokio::test(flavor = "multi_thread")]
async fn http2_client_reaches_http1_upstream() {
    let s = setup().await;
    let (code, version, body) = get(&s, "--http2", "/hello");
    assert_eq!((code.as_str(), version.as_str()), ("200", "2"));
    assert!(body.starts_with("GET /hello\n"), "{body}");
    assert!(
        body.contains(&format!("host: localhost:{}\n", s.port)),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
}

/// An existing X-Forwarded-For is extended, not replaced.
#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_is_appended() {
    let s = setup().await;
    let url = format!("https://localhost:{}/hello", s.port);
    let out = curl(&[
        "--cacert",
        &s.ca,
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        &url,
    ]);
    let body = String::from_utf8(out.stdout).unwrap();
    assert!(
        body.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{body}"
    );
}

/// A `strip_prefix` route forwards the path without its prefix, query intact.
#[tokio::test(flavor = "multi_thread")]
async fn strip_prefix_route_rewrites_the_path() {
    let s = setup().await;
    let (code, _, body) = get(&s, "--http2", "/api/v1/things?limit=5");
    assert_eq!(code, "200");
    assert!(body.starts_with("GET /v1/things?limit=5\n"), "{body}");
}

/// A request no route matches gets 404 from the proxy; the upstream never sees it.
#[tokio::test(flavor = "multi_thread")]
async fn unmatched_path_is_404() {
    let s = setup().await;
    let before = s.upstream.connections();
    let (code, _, _) = get(&s, "--http1.1", "/nothing-here");
    assert_eq!(code, "404");
    assert_eq!(s.upstream.connections(), before);
}

/// Keep-alive on both sides: five requests on one client connection use one upstream connection.
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_reused_on_both_sides() {
    let s = setup().await;
    let url = format!("https://localhost:{}/hello", s.port);
    let urls: Vec<&str> = std::iter::repeat_n(url.as_str(), 5).collect();
    let mut args = vec!["--http1.1", "--verbose", "--cacert", &s.ca];
    args.extend(urls);
    let out = curl(&args);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("Re-using existing connection").count(),
        4,
        "{stderr}"
    );
    assert_eq!(s.upstream.connections(), 1);
}

/// An HTTP/1.1 request in absolute form reaches the upstream in origin form, with the URI's
/// authority as `Host`.
#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_target_is_forwarded_in_origin_form() {
    let s = setup().await;
    let target = format!("https://localhost:{}/hello/abs?q=1", s.port);
    let url = format!("https://localhost:{}/", s.port);
    let out = curl(&[
        "--http1.1",
        "--cacert",
        &s.ca,
        "--request-target",
        &target,
        &url,
    ]);
    let body = String::from_utf8(out.stdout).unwrap();
    assert!(body.starts_with("GET /hello/abs?q=1\n"), "{body}");
    assert!(
        body.contains(&format!("host: localhost:{}\n", s.port)),
        "{body}"
    );
}
