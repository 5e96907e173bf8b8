//! Certificate rotation without restart, seen through real handshakes: every way tooling replaces
//! files is picked up within 2 s (polled), SIGHUP and the periodic check work without file
//! events, a half-written pair is waited for quietly, and in-flight gRPC streams survive.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    Proxy, fingerprint, free_port, local, served_fingerprint, wait_for_served, write_atomically,
};
use testkit::pki::{Leaf, Pki};

/// How quickly a rotation must be seen by a new handshake.
const DETECTION_LIMIT: Duration = Duration::from_secs(2);

/// A proxy with one TLS listener on `cert`/`key`, routing everything to `upstream`.
fn config(port: u16, cert: &Path, key: &Path, reload: &str, upstream: &str) -> String {
    format!(
        r#"
[reload]
{reload}

[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "backend"

[[upstreams]]
name = "backend"
address = "{upstream}"
protocol = "h2c"
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

fn replace_symlink(link: &Path, target: &Path) {
    let tmp = sibling(link, ".tmp-link");
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// How a rotation writes the new files.
#[derive(Clone, Copy, Debug)]
enum Style {
    /// Overwrite both files in place.
    InPlace,
    /// Write temp files and rename them over the old ones.
    Rename,
    /// `cert.pem`/`key.pem` are symlinks, swapped to a new version directory.
    Symlink,
    /// Kubernetes secret volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`.
    Kubernetes,
}

/// The files a proxy is configured with, laid out for a style.
struct Layout {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    style: Style,
    version: usize,
}

impl Layout {
    fn new(dir: &Path, style: Style, first: &Leaf) -> Layout {
        let (cert, key) = match style {
            Style::InPlace | Style::Rename | Style::Symlink => {
                (dir.join("cert.pem"), dir.join("key.pem"))
            }
            Style::Kubernetes => (dir.join("tls.crt"), dir.join("tls.key")),
        };
        let mut layout = Layout {
            dir: dir.to_owned(),
            cert,
            key,
            style,
            version: 0,
        };
        match style {
            Style::InPlace | Style::Rename => {
                std::fs::write(&layout.cert, &first.chain_pem).unwrap();
                std::fs::write(&layout.key, &first.key_pem).unwrap();
            }
            Style::Symlink => {
                let v = layout.version_dir(first);
                symlink(v.join("cert.pem"), &layout.cert).unwrap();
                symlink(v.join("key.pem"), &layout.key).unwrap();
            }
            Style::Kubernetes => {
                let v = layout.version_dir(first);
                symlink(v.file_name().unwrap(), dir.join("..data")).unwrap();
                symlink("..data/tls.crt", &layout.cert).unwrap();
                symlink("..data/tls.key", &layout.key).unwrap();
            }
        }
        layout
    }

    /// Writes a leaf into a new version directory (`v<n>` or `..<n>` for Kubernetes).
    fn version_dir(&mut self, leaf: &Leaf) -> PathBuf {
        self.version += 1;
        let (name, cert, key) = match self.style {
            Style::Kubernetes => (
                format!("..2026_12_03_{:02}", self.version),
                "tls.crt",
                "tls.key",
            ),
            _ => (format!("v{}", self.version), "cert.pem", "key.pem"),
        };
        let v = self.dir.join(name);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join(cert), &leaf.chain_pem).unwrap();
        std::fs::write(v.join(key), &leaf.key_pem).unwrap();
        v
    }

    /// Replaces both files the way this style's tooling does.
    fn rotate(&mut self, leaf: &Leaf) {
        match self.style {
            Style::InPlace => {
                std::fs::write(&self.cert, &leaf.chain_pem).unwrap();
                std::fs::write(&self.key, &leaf.key_pem).unwrap();
            }
            Style::Rename => {
                write_atomically(&self.cert, &leaf.chain_pem);
                write_atomically(&self.key, &leaf.key_pem);
            }
            Style::Symlink => {
                let v = self.version_dir(leaf);
                replace_symlink(&self.cert, &v.join("cert.pem"));
                replace_symlink(&self.key, &v.join("key.pem"));
            }
            Style::Kubernetes => {
                let old = std::fs::read_link(self.dir.join("..data")).unwrap();
                let v = self.version_dir(leaf);
                replace_symlink(&self.dir.join("..data"), Path::new(v.file_name().unwrap()));
                std::fs::remove_dir_all(self.dir.join(old)).unwrap();
            }
        }
    }
}

struct Running {
    _dir: tempfile::TempDir,
    proxy: Proxy,
    pki: Pki,
    port: u16,
    _upstream: testkit::grpc_upstream::GrpcUpstream,
}

async fn start(style: Style, reload: &str) -> (Running, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let first = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    let layout = Layout::new(dir.path(), style, &first);
    let upstream = testkit::grpc_upstream::start().await;
    let port = free_port();
    let cfg = config(
        port,
        &layout.cert,
        &layout.key,
        reload,
        &upstream.addr.to_string(),
    );
    let proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    proxy.wait_for_log("certificate reloader running");
    assert_eq!(
        served_fingerprint(local(port), &pki.ca_pem).await,
        fingerprint(&first.der)
    );
    (
        Running {
            _dir: dir,
            proxy,
            pki,
            port,
            _upstream: upstream,
        },
        layout,
    )
}

async fn rotation_is_seen(style: Style) {
    let (r, mut layout) = start(style, "interval = \"1h\"").await;
    for round in 0..3 {
        let leaf = r.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
        layout.rotate(&leaf);
        let took = wait_for_served(
            local(r.port),
            &r.pki.ca_pem,
            &fingerprint(&leaf.der),
            DETECTION_LIMIT,
        )
        .await;
        eprintln!("{style:?} rotation {round}: new certificate served after {took:?}");
    }
    assert!(r.proxy.log().contains("reloaded"), "{}", r.proxy.log());
    assert!(
        !r.proxy.log().contains("reload failed"),
        "{}",
        r.proxy.log()
    );
}

/// Files overwritten in place are picked up by the filesystem watch.
#[tokio::test(flavor = "multi_thread")]
async fn in_place_write_is_seen() {
    rotation_is_seen(Style::InPlace).await;
}

/// Temp file + rename over the old file is picked up.
#[tokio::test(flavor = "multi_thread")]
async fn rename_over_is_seen() {
    rotation_is_seen(Style::Rename).await;
}

/// Symlinks swapped to a new version directory are picked up.
#[tokio::test(flavor = "multi_thread")]
async fn symlink_swap_is_seen() {
    rotation_is_seen(Style::Symlink).await;
}

/// A Kubernetes secret update (the `..data` symlink swapped, the old directory removed) is
/// picked up.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_secret_update_is_seen() {
    rotation_is_seen(Style::Kubernetes).await;
}

/// Certificate and key written 1.5 s apart, in either order: the old pair is served until the new
/// pair is whole, nothing is logged as an error, and the new pair is served within 2 s of the
/// second write.
#[tokio::test(flavor = "multi_thread")]
async fn pair_written_seconds_apart_is_swapped_whole_and_quietly() {
    for cert_first in [true, false] {
        let (r, layout) = start(Style::Rename, "interval = \"1h\"").await;
        let old = served_fingerprint(local(r.port), &r.pki.ca_pem).await;
        let leaf = r.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
        let (first, second) = if cert_first {
            (
                (&layout.cert, &leaf.chain_pem),
                (&layout.key, &leaf.key_pem),
            )
        } else {
            (
                (&layout.key, &leaf.key_pem),
                (&layout.cert, &leaf.chain_pem),
            )
        };
        write_atomically(first.0, first.1);
        // The scenario itself: tooling that writes the second file a moment later.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(served_fingerprint(local(r.port), &r.pki.ca_pem).await, old);
        write_atomically(second.0, second.1);
        let took = wait_for_served(
            local(r.port),
            &r.pki.ca_pem,
            &fingerprint(&leaf.der),
            DETECTION_LIMIT,
        )
        .await;
        eprintln!("pair written apart (cert first: {cert_first}): served after {took:?}");
        let log = r.proxy.log();
        assert!(
            !log.contains("ERROR smq_edge"),
            "a half-written pair was reported as an error:\n{log}"
        );
    }
}

/// With the filesystem watch off, SIGHUP triggers the reload.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads() {
    let (r, mut layout) = start(Style::Rename, "watch = false\ninterval = \"1h\"").await;
    let leaf = r.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    layout.rotate(&leaf);
    r.proxy.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for_served(
        local(r.port),
        &r.pki.ca_pem,
        &fingerprint(&leaf.der),
        DETECTION_LIMIT,
    )
    .await;
    r.proxy.wait_for_log("SIGHUP: reloading certificates");
}

/// With the filesystem watch off, the periodic check is the safety net.
#[tokio::test(flavor = "multi_thread")]
async fn periodic_check_reloads_without_events() {
    let (r, mut layout) = start(Style::Rename, "watch = false\ninterval = \"300ms\"").await;
    let leaf = r.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    layout.rotate(&leaf);
    wait_for_served(
        local(r.port),
        &r.pki.ca_pem,
        &fingerprint(&leaf.der),
        DETECTION_LIMIT,
    )
    .await;
}

/// A gRPC server stream started before a rotation keeps its connection and completes after it.
#[tokio::test(flavor = "multi_thread")]
async fn in_flight_grpc_stream_survives_rotation() {
    use testkit::echo::EchoRequest;
    use testkit::echo::echo_client::EchoClient;
    let (r, mut layout) = start(Style::Rename, "interval = \"1h\"").await;
    let channel = common::grpc_channel(local(r.port), &r.pki.ca_pem).await;
    let mut stream = EchoClient::new(channel)
        .server_stream(EchoRequest {
            message: "tick".into(),
            count: 15,
            interval_ms: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().message, "tick-0");
    let leaf = r.pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    layout.rotate(&leaf);
    wait_for_served(
        local(r.port),
        &r.pki.ca_pem,
        &fingerprint(&leaf.der),
        DETECTION_LIMIT,
    )
    .await;
    let mut got = 1;
    while let Some(reply) = stream
        .message()
        .await
        .expect("stream broken by the rotation")
    {
        assert_eq!(reply.message, format!("tick-{got}"));
        got += 1;
    }
    assert_eq!(got, 15);
    assert!(stream.trailers().await.unwrap().is_some());
}

/// Running as root ignores file permissions, so the unreadable-file case runs the proxy as
/// `nobody` when the tests run as root.
fn unprivileged_uid() -> Option<u32> {
    nix::unistd::geteuid().is_root().then_some(65534)
}

/// Each bad replacement leaves the old certificate served and logs one error naming the file
/// and the reason; a valid pair written afterwards is still applied.
#[tokio::test(flavor = "multi_thread")]
async fn bad_files_keep_the_last_good_certificate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pki = Pki::localhost();
    let good = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &good.chain_pem).unwrap();
    std::fs::write(&key, &good.key_pem).unwrap();
    let upstream = testkit::grpc_upstream::start().await;
    let port = free_port();
    let cfg = config(
        port,
        &cert,
        &key,
        "interval = \"1h\"\nsettle = \"500ms\"",
        &upstream.addr.to_string(),
    );
    let proxy = Proxy::start_as(dir.path(), &cfg, &[local(port)], unprivileged_uid());
    proxy.wait_for_log("certificate reloader running");
    let good_fp = fingerprint(&good.der);

    let other = pki.leaf("localhost", &["localhost"]);
    let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    // A cut inside the first (leaf) block: the END line is missing.
    let half = &good.chain_pem[..good.chain_pem.len() / 3];
    let cert_s = cert.display().to_string();
    let key_s = key.display().to_string();
    type Apply = Box<dyn Fn()>;
    let cases: Vec<(&str, Apply, String)> = vec![
        (
            "garbage",
            Box::new({
                let c = cert.clone();
                move || write_atomically(&c, "not a certificate\n")
            }),
            format!("{cert_s}: no PEM certificate found"),
        ),
        (
            "empty",
            Box::new({
                let c = cert.clone();
                move || write_atomically(&c, "")
            }),
            format!("{cert_s}: no PEM certificate found"),
        ),
        (
            "truncated",
            Box::new({
                let c = cert.clone();
                let h = half.to_owned();
                move || write_atomically(&c, &h)
            }),
            format!("{cert_s}: malformed PEM"),
        ),
        (
            "key that does not match",
            Box::new({
                let k = key.clone();
                let o = other.key_pem.clone();
                move || write_atomically(&k, &o)
            }),
            format!("{key_s} does not match the leaf certificate in {cert_s}"),
        ),
        (
            "key of another algorithm",
            Box::new({
                let k = key.clone();
                move || write_atomically(&k, &ed25519)
            }),
            format!("{key_s} does not match the leaf certificate in {cert_s}"),
        ),
        (
            "certificate-only key file",
            Box::new({
                let k = key.clone();
                let c = good.chain_pem.clone();
                move || write_atomically(&k, &c)
            }),
            format!("{key_s}: no PEM private key found"),
        ),
        (
            "deleted",
            Box::new({
                let k = key.clone();
                move || std::fs::remove_file(&k).unwrap()
            }),
            format!("cannot read {key_s}: No such file"),
        ),
        (
            "unreadable",
            Box::new({
                let k = key.clone();
                move || {
                    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o000)).unwrap()
                }
            }),
            format!("cannot read {key_s}: Permission denied"),
        ),
    ];
    for (name, apply, want) in cases {
        let before = proxy.log().matches("reload failed").count();
        apply();
        common::poll_until(&format!("{name}: an error line"), || {
            proxy.log().matches("reload failed").count() > before
        });
        let log = proxy.log();
        let line = log.lines().rfind(|l| l.contains("reload failed")).unwrap();
        assert!(line.contains(&want), "{name}: expected {want:?} in {line}");
        assert_eq!(
            served_fingerprint(local(port), &pki.ca_pem).await,
            good_fp,
            "{name}: old certificate no longer served"
        );
        // Another trigger with the same bad content does not log again.
        let hups = log.matches("SIGHUP: reloading").count();
        proxy.signal(nix::sys::signal::Signal::SIGHUP);
        common::poll_until("SIGHUP handled", || {
            proxy.log().matches("SIGHUP: reloading").count() > hups
        });
        assert_eq!(
            served_fingerprint(local(port), &pki.ca_pem).await,
            good_fp,
            "{name}"
        );
        assert_eq!(
            proxy.log().matches("reload failed").count(),
            before + 1,
            "{name}: logged more than once"
        );
        // Put the good pair back (same content as served: nothing to apply). Renaming over the
        // files also replaces a deleted or unreadable key; no intermediate state is new content.
        write_atomically(&cert, &good.chain_pem);
        write_atomically(&key, &good.key_pem);
        eprintln!("{name}: kept the old certificate, logged {want:?}");
    }
    assert_eq!(
        proxy.log().matches("reload failed").count(),
        8,
        "{}",
        proxy.log()
    );
    let fresh = pki.leaf("localhost", &["localhost", "127.0.0.1"]);
    write_atomically(&key, &fresh.key_pem);
    write_atomically(&cert, &fresh.chain_pem);
    wait_for_served(
        local(port),
        &pki.ca_pem,
        &fingerprint(&fresh.der),
        DETECTION_LIMIT,
    )
    .await;
}
