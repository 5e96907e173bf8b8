//! MQTT over TLS through a tcp listener to a real mosquitto broker, with the mosquitto command
//! line clients: delivery (QoS 0 and 1) for MQTT 3.1, 3.1.1 and 5; a subscriber connected before
//! a certificate rotation still receiving after it; an upstream that refuses connections; SIGTERM
//! closing open sessions with their access log lines.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use common::{Proxy, fingerprint, free_port, local, poll_until, wait_for_served};
use testkit::mqtt_broker::Broker;
use testkit::pki::{Pki, PkiFiles};

fn config(port: u16, cert: &Path, key: &Path, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[reload]
interval = "1h"
[[listeners]]
name = "mqtt"
listen = "127.0.0.1:{port}"
protocol = "tcp"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "mqtt-adapter"

[[upstreams]]
name = "mqtt-adapter"
address = "{upstream}"
protocol = "tcp"
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// The proxy's tcp listener in front of a fresh broker, with its access log in a file.
struct Edge {
    files: PkiFiles,
    port: u16,
    access_log: PathBuf,
    proxy: Proxy,
    _broker: Broker,
    _dir: tempfile::TempDir,
}

/// Starts an [`Edge`]; `server` is TOML put before the listener's (e.g. a `[server]` section).
fn start_edge(server: &str) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::localhost().write(dir.path(), "");
    let broker = testkit::mqtt_broker::start();
    let port = free_port();
    let access_log = dir.path().join("access.log");
    let cfg = format!(
        "{server}[access_log]\npath = \"{}\"\n{}",
        access_log.display(),
        config(port, &files.cert, &files.key, broker.mqtt)
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    Edge {
        files,
        port,
        access_log,
        proxy,
        _broker: broker,
        _dir: dir,
    }
}

/// A `mosquitto_sub` through the proxy whose output is collected as it runs.
struct Subscriber {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `topic` and waits for the broker's SUBACK (seen in `-d` output).
    fn start(port: u16, ca: &Path, topic: &str, version: &str, count: usize) -> Subscriber {
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; line buffering lets the
        // test see the SUBACK as it happens.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-d",
                "-h",
                "localhost",
                "-p",
                &port.to_string(),
                "--cafile",
            ])
            .arg(ca)
            .args([
                "-t",
                topic,
                "-q",
                "1",
                "-V",
                version,
                "-C",
                &count.to_string(),
                "-W",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mosquitto_sub (install it: apt-get install mosquitto-clients)");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            }));
        }
        let sub = Subscriber {
            child,
            output,
            readers,
        };
        poll_until(&format!("{version} subscriber SUBACK"), || {
            sub.output().contains("SUBACK")
        });
        sub
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for mosquitto_sub to exit; returns how it exited and everything it printed.
    fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        // The pipes close when the process exits; the readers then have every line.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status, self.output())
    }

    /// Waits for mosquitto_sub to exit after receiving its messages.
    fn finish(self) -> String {
        let (status, out) = self.wait();
        assert!(status.success(), "mosquitto_sub failed:\n{out}");
        out
    }
}

fn publish(port: u16, ca: &Path, topic: &str, message: &str, version: &str, qos: &str) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &port.to_string(), "--cafile"])
        .arg(ca)
        .args(["-t", topic, "-m", message, "-q", qos, "-V", version])
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {version} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// For MQTT 3.1, 3.1.1 and 5, QoS 0 and 1: a message published over TLS through the proxy
/// reaches a subscriber connected over TLS through the proxy.
#[test]
fn publish_reaches_subscriber_for_every_protocol_version() {
    let e = start_edge("");
    for version in ["mqttv31", "mqttv311", "mqttv5"] {
        for qos in ["0", "1"] {
            let topic = format!("edge/{version}/{qos}");
            let sub = Subscriber::start(e.port, &e.files.ca, &topic, version, 1);
            let message = format!("hello {version} qos{qos}");
            publish(e.port, &e.files.ca, &topic, &message, version, qos);
            let out = sub.finish();
            assert!(
                out.lines().any(|l| l == message),
                "{version} qos {qos}: {out}"
            );
        }
    }
    assert!(
        !e.proxy.log().contains("ERROR smq_edge"),
        "{}",
        e.proxy.log()
    );
    // Each session's access log line carries the client's TLS side and how it ended.
    let mut lines = String::new();
    poll_until("12 tcp session lines", || {
        lines = std::fs::read_to_string(&e.access_log).unwrap_or_default();
        lines.lines().count() >= 12
    });
    for line in lines.lines() {
        assert!(
            line.contains(" mqtt sni=localhost TLSv1.3 none tcp upstream=mqtt-adapter closed "),
            "{line}"
        );
    }
}

/// A subscriber connected before a certificate rotation keeps its connection and still receives
/// messages published after the new certificate is served.
#[tokio::test(flavor = "multi_thread")]
async fn subscriber_survives_certificate_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let broker = testkit::mqtt_broker::start();
    let port = free_port();
    let proxy = Proxy::start(
        dir.path(),
        &config(port, &files.cert, &files.key, broker.mqtt),
        &[local(port)],
    );
    proxy.wait_for_log("certificate reloader running");
    let sub = Subscriber::start(port, &files.ca, "edge/rotation", "mqttv311", 2);
    publish(port, &files.ca, "edge/rotation", "before", "mqttv311", "1");
    let leaf = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    common::rotate_pair(&files.cert, &files.key, &leaf);
    wait_for_served(
        local(port),
        &pki.ca_pem,
        &fingerprint(&leaf.der),
        std::time::Duration::from_secs(2),
    )
    .await;
    publish(port, &files.ca, "edge/rotation", "after", "mqttv311", "1");
    let out = sub.finish();
    assert!(
        out.lines().any(|l| l == "before") && out.lines().any(|l| l == "after"),
        "{out}"
    );
}

/// An upstream that refuses connections: the client's TLS connection is closed at once and the
/// error is logged with the listener's name.
#[tokio::test(flavor = "multi_thread")]
async fn refused_upstream_closes_the_client_connection() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let port = free_port();
    let dead = local(free_port());
    let proxy = Proxy::start(
        dir.path(),
        &config(port, &files.cert, &files.key, dead),
        &[local(port)],
    );
    let mut tls = common::tls_stream(local(port), &pki.ca_pem, &[]).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(common::DEADLINE, tls.read(&mut buf))
        .await
        .expect("the proxy kept the client connection open")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to be closed");
    proxy.wait_for_log("cannot connect upstream; closing the client connection");
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains("cannot connect upstream"))
        .unwrap();
    assert!(
        line.contains("listener=mqtt") && line.contains("ERROR"),
        "{line}"
    );
}

/// SIGTERM with a subscriber connected: the session is closed (a byte stream has no request to
/// drain to), its access log line is written with outcome `shutdown`, and the process exits 0.
#[test]
fn shutdown_closes_open_sessions_and_logs_them() {
    let mut e = start_edge("[server]\nshutdown_grace = \"10s\"\n");
    let sub = Subscriber::start(e.port, &e.files.ca, "edge/shutdown", "mqttv311", 1);
    e.proxy.signal(nix::sys::signal::Signal::SIGTERM);
    let status = e.proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", e.proxy.log());
    assert!(
        e.proxy.log().contains("drained; exiting"),
        "{}",
        e.proxy.log()
    );
    let (sub_status, sub_output) = sub.wait();
    assert!(
        !sub_status.success(),
        "the subscriber should have lost its connection:\n{sub_output}"
    );
    let lines = std::fs::read_to_string(&e.access_log).unwrap();
    assert!(
        lines
            .lines()
            .any(|l| l
                .contains(" mqtt sni=localhost TLSv1.3 none tcp upstream=mqtt-adapter shutdown ")),
        "{lines}"
    );
}
