//! SIGTERM and SIGINT: the proxy stops accepting, lets the in-flight request finish, and exits 0
//! as soon as it is done (not after a fixed sleep).

mod common;

use common::{Proxy, free_port, local, poll_until};
use nix::sys::signal::Signal;
use testkit::pki::Pki;

/// For each signal: a slow request in flight when the signal arrives still gets its 200, new
/// connections are refused, and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn signal_drains_in_flight_requests_then_exits_zero() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let files = Pki::localhost().write(dir.path(), "");
        let upstream = testkit::http_upstream::start().await;
        let port = free_port();
        let cfg = format!(
            r#"
[server]
shutdown_grace = "10s"
[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "rest"
[[upstreams]]
name = "rest"
address = "{addr}"
"#,
            cert = files.cert.display(),
            key = files.key.display(),
            addr = upstream.addr,
        );
        let mut proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
        let ca = files.ca.to_str().unwrap().to_owned();
        let slow = std::thread::spawn(move || {
            common::curl(&[
                "--cacert",
                &ca,
                "--write-out",
                "\n%{http_code}",
                &format!("https://localhost:{port}/slow"),
            ])
        });
        poll_until("the slow request to reach the upstream", || {
            upstream.connections() == 1
        });
        proxy.signal(signal);
        poll_until("the listener to close", || {
            std::net::TcpStream::connect(local(port)).is_err()
        });
        let out = slow.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("\n200"),
            "{signal}: in-flight request failed: {text}"
        );
        assert!(text.starts_with("GET /slow"), "{text}");
        let status = proxy.wait_exit();
        assert_eq!(status.code(), Some(0), "{signal}:\n{}", proxy.log());
        assert!(proxy.log().contains("drained; exiting"), "{}", proxy.log());
    }
}
