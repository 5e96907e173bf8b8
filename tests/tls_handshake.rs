//! Downstream TLS as a client sees it: the configured certificate and its whole chain are served
//! in order, with and without SNI, over TLS 1.2 and 1.3; ALPN picks `h2` or `http/1.1`; RSA and
//! ECDSA keys load from PKCS#8, PKCS#1 and SEC1 PEM.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Proxy, fingerprint, free_port, handshake, local};
use rustls::version::{TLS12, TLS13};
use testkit::pki::Pki;

fn listener(name: &str, port: u16, cert: &Path, key: &Path) -> String {
    format!(
        r#"
[[listeners]]
name = "{name}"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "rest"
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

const UPSTREAM: &str = "[[upstreams]]\nname = \"rest\"\naddress = \"127.0.0.1:9\"\n";

/// The leaf and the intermediate are served in file order, to clients with SNI (`localhost`)
/// and without (an IP address), over TLS 1.3 and TLS 1.2.
#[tokio::test(flavor = "multi_thread")]
async fn configured_chain_is_served_with_and_without_sni() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let port = free_port();
    let cfg = listener("https", port, &files.cert, &files.key) + UPSTREAM;
    let _proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    let want = vec![
        fingerprint(&pki.leaf_der),
        fingerprint(&pki.intermediate_der),
    ];
    for name in ["localhost", "127.0.0.1"] {
        for version in [&TLS13, &TLS12] {
            let hs = handshake(local(port), name, &pki.ca_pem, &[b"h2"], &[version])
                .await
                .unwrap_or_else(|e| panic!("{name} {version:?}: {e}"));
            let got: Vec<String> = hs.chain.iter().map(|c| fingerprint(c)).collect();
            assert_eq!(got, want, "{name} {version:?}");
            assert_eq!(hs.version, Some(version.version), "{name}");
        }
    }
}

/// ALPN: `h2` when offered (gRPC clients insist on it), `http/1.1` for clients that offer only
/// that (WebSocket clients), and `h2` when both are offered.
#[tokio::test(flavor = "multi_thread")]
async fn alpn_negotiates_h2_and_http11() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let port = free_port();
    let cfg = listener("https", port, &files.cert, &files.key) + UPSTREAM;
    let _proxy = Proxy::start(dir.path(), &cfg, &[local(port)]);
    let cases: [(&[&[u8]], &[u8]); 3] = [
        (&[b"h2"], b"h2"),
        (&[b"http/1.1"], b"http/1.1"),
        (&[b"http/1.1", b"h2"], b"h2"),
    ];
    for (offer, want) in cases {
        let hs = handshake(local(port), "localhost", &pki.ca_pem, offer, &[&TLS13])
            .await
            .unwrap();
        assert_eq!(hs.alpn.as_deref(), Some(want));
    }
}

/// Runs openssl in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (install it: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates whose keys are RSA (PKCS#1, PKCS#8) and ECDSA P-256 (SEC1, PKCS#8), made with
/// openssl so the key files are in exactly the form operators have; each is served.
#[tokio::test(flavor = "multi_thread")]
async fn rsa_and_ecdsa_keys_load_in_every_pem_form() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=openssl test CA",
            "-days",
            "30",
        ],
    );
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let variants: [(&str, &[&str], &str); 4] = [
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "rsa-pkcs8",
            &["genpkey", "-algorithm", "RSA", "-out", "rsa-pkcs8.key"],
            "BEGIN PRIVATE KEY",
        ),
        (
            "ec-sec1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec-sec1.key",
            ],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "ec-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec-pkcs8.key",
            ],
            "BEGIN PRIVATE KEY",
        ),
    ];
    let mut cfg = String::from(UPSTREAM);
    let mut ports = Vec::new();
    for (name, genkey, header) in variants {
        openssl(d, genkey);
        let key = d.join(format!("{name}.key"));
        assert!(
            std::fs::read_to_string(&key).unwrap().contains(header),
            "{name}"
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                "/CN=localhost",
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                "leaf.ext",
                "-out",
                &format!("{name}.pem"),
            ],
        );
        let port = free_port();
        cfg += &listener(name, port, &d.join(format!("{name}.pem")), &key);
        ports.push((name, port));
    }
    let ready: Vec<_> = ports.iter().map(|(_, p)| local(*p)).collect();
    let _proxy = Proxy::start(d, &cfg, &ready);
    let ca = std::fs::read_to_string(d.join("ca.pem")).unwrap();
    for (name, port) in ports {
        let leaf_pem = std::fs::read(d.join(format!("{name}.pem"))).unwrap();
        let leaf = smq_edge::tls::pem::parse_chain(&leaf_pem, name).unwrap();
        for version in [&TLS13, &TLS12] {
            let hs = handshake(local(port), "localhost", &ca, &[b"h2"], &[version])
                .await
                .unwrap_or_else(|e| panic!("{name} {version:?}: {e}"));
            assert_eq!(fingerprint(&hs.chain[0]), fingerprint(&leaf[0]), "{name}");
        }
    }
}
