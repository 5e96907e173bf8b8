//! Shared helpers for the loopback integration tests: run the real smq-edge binary on a config
//! written to a temp dir, wait for its ports, read its log, and talk to it with real clients
//! (curl, rustls, tonic).
#![allow(dead_code)] // Each test crate uses a different subset of these helpers.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;

/// How long any condition is polled for before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The smq-edge binary built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_smq-edge")
}

/// A port for the proxy to listen on, free a moment ago on 127.0.0.1. It comes from below the
/// kernel's ephemeral range (32768 and up), where the tests' own servers and clients get their
/// ports, so no server started later in another test can take it before the proxy binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Test binaries run one after another; within one, the counter keeps ports distinct.
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "ran out of test ports");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `cond` until it holds or [`DEADLINE`] passes.
pub fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running smq-edge process; killed when dropped.
pub struct Proxy {
    child: Child,
    log: Arc<Mutex<String>>,
    /// Copies stderr into `log`; finishes when the process exits.
    reader: Option<std::thread::JoinHandle<()>>,
    /// The directory holding its config and certificates.
    pub dir: PathBuf,
}

impl Proxy {
    /// Writes `config` to `dir/config.toml`, starts the proxy there and waits until every address
    /// in `ready` accepts connections.
    pub fn start(dir: &Path, config: &str, ready: &[SocketAddr]) -> Proxy {
        Self::start_as(dir, config, ready, None)
    }

    /// Like [`Proxy::start`], running the process as `uid` (and the same gid) when given.
    pub fn start_as(dir: &Path, config: &str, ready: &[SocketAddr], uid: Option<u32>) -> Proxy {
        Self::start_with(dir, config, ready, uid, &[])
    }

    /// Like [`Proxy::start`], with extra environment variables (`SMQ_*` settings).
    pub fn start_env(
        dir: &Path,
        config: &str,
        ready: &[SocketAddr],
        env: &[(&str, &str)],
    ) -> Proxy {
        Self::start_with(dir, config, ready, None, env)
    }

    fn start_with(
        dir: &Path,
        config: &str,
        ready: &[SocketAddr],
        uid: Option<u32>,
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut proxy = Self::spawn_with(dir, config, &[], uid, env);
        for addr in ready {
            poll_until(&format!("proxy to listen on {addr}"), || {
                if let Some(status) = proxy.try_status() {
                    panic!(
                        "proxy exited with {status} before listening:\n{}",
                        proxy.log()
                    );
                }
                std::net::TcpStream::connect(addr).is_ok()
            });
        }
        proxy
    }

    /// Starts the proxy with extra arguments and does not wait for anything.
    pub fn spawn(dir: &Path, config: &str, args: &[&str]) -> Proxy {
        Self::spawn_with(dir, config, args, None, &[])
    }

    /// Starts the proxy with extra environment variables and does not wait for anything.
    pub fn spawn_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Proxy {
        Self::spawn_with(dir, config, &[], None, env)
    }

    fn spawn_with(
        dir: &Path,
        config: &str,
        args: &[&str],
        uid: Option<u32>,
        env: &[(&str, &str)],
    ) -> Proxy {
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(binary());
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(uid);
        }
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn smq-edge");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[smq-edge] {line}");
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Proxy {
            child,
            log,
            reader: Some(reader),
            dir: dir.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        poll_until(&format!("log line containing {needle:?}"), || {
            self.log().contains(needle)
        });
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("send signal");
    }

    /// Waits for the process to exit and returns its status; the log is then complete.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "proxy did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with `args` (plus `--silent --show-error`) and returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl (install it: apt-get install curl)")
}

/// What a TLS handshake with the proxy showed.
pub struct Handshake {
    /// Certificates the server sent, in order.
    pub chain: Vec<CertificateDer<'static>>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// Negotiated protocol version.
    pub version: Option<rustls::ProtocolVersion>,
}

/// Completes a real TLS handshake with `addr`, trusting `ca_pem`, naming `server_name` (an IP
/// address sends no SNI), offering `alpn` and only `versions`.
pub async fn handshake(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Handshake, std::io::Error> {
    let connector =
        tokio_rustls::TlsConnector::from(client_config_versions(ca_pem, alpn, versions));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut tls = connector.connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let out = Handshake {
        chain: conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
    };
    // Close with close_notify so the proxy sees a clean end of the connection.
    let _ = tls.shutdown().await;
    Ok(out)
}

/// An open TLS connection to `addr` (name `localhost`), trusting `ca_pem` and offering `alpn`.
pub async fn tls_stream(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem, alpn));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the proxy")
}

/// A rustls client configuration trusting `ca_pem`, offering `alpn`, TLS 1.2 and 1.3.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config_versions(ca_pem, alpn, rustls::DEFAULT_VERSIONS)
}

/// A rustls client configuration trusting `ca_pem`, offering `alpn` and only `versions`.
pub fn client_config_versions(
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A tonic channel to `addr` over TLS, trusting `ca_pem` and checking the name `localhost`.
pub async fn grpc_channel(addr: SocketAddr, ca_pem: &str) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("connect through the proxy")
}

/// The fingerprint of the leaf a new handshake with `addr` (SNI `localhost`) gets.
pub async fn served_fingerprint(addr: SocketAddr, ca_pem: &str) -> String {
    let hs = handshake(
        addr,
        "localhost",
        ca_pem,
        &[b"h2"],
        rustls::DEFAULT_VERSIONS,
    )
    .await
    .expect("handshake with the proxy");
    fingerprint(&hs.chain[0])
}

/// Polls new handshakes until the leaf served has fingerprint `want`, for at most `limit`;
/// returns how long that took.
pub async fn wait_for_served(
    addr: SocketAddr,
    ca_pem: &str,
    want: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if served_fingerprint(addr, ca_pem).await == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "new certificate not served within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Replaces `path` the way most tooling does: write a temp file, rename it over the old one.
pub fn write_atomically(path: &Path, contents: &str) {
    let mut name = path.file_name().expect("file name").to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

/// Rotates a certificate and key pair: the key first, then the chain.
pub fn rotate_pair(cert: &Path, key: &Path, leaf: &testkit::pki::Leaf) {
    write_atomically(key, &leaf.key_pem);
    write_atomically(cert, &leaf.chain_pem);
}

/// Lower-case hex SHA-256, the fingerprint the tests compare.
pub fn fingerprint(der: &[u8]) -> String {
    smq_edge::tls::pem::sha256_hex(der)
}

/// Socket address on 127.0.0.1.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
