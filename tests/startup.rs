//! Start-up and `check` outcomes: bad configuration is reported naming the field or file with a
//! non-zero exit; a port that stays in use ends the process cleanly; the committed default config is valid.

mod common;

use std::process::Command;

use common::{Proxy, binary, free_port};
use testkit::pki::Pki;

/// Runs `smq-edge check` on `config` in a fresh directory; returns (exit code, stdout+stderr).
fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    pki.write(dir.path(), "");
    Pki::localhost().write(dir.path(), "other-");
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config", "config.toml"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A valid listener section, with `{tls}` and `{route}` for the parts a case changes.
fn config(tls: &str, upstream_ref: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
[[listeners]]
name = "https"
listen = "127.0.0.1:8443"
{tls}
[[listeners.routes]]
upstream = "{upstream_ref}"

[[upstreams]]
name = "rest"
address = "127.0.0.1:9002"
"#
    )
}

const GOOD_TLS: &str = "[listeners.tls]\ncert = \"chain.pem\"\nkey = \"key.pem\"";

/// The reference case: a valid config passes `check` and names its listener.
#[test]
fn valid_config_passes_check() {
    let (code, text) = check(&config(GOOD_TLS, "rest", ""));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("listener https 127.0.0.1:8443 tls CN=localhost"),
        "{text}"
    );
}

/// Each broken config fails `check` with a message naming what to fix.
#[test]
fn bad_configs_fail_check_naming_the_field_or_file() {
    let cases = [
        (
            config(GOOD_TLS, "nope", ""),
            "listeners.https.routes[0].upstream: unknown upstream \"nope\"",
        ),
        (
            config(GOOD_TLS, "rest", "[server]\nthreads = \"two\""),
            "server.threads",
        ),
        (
            config(GOOD_TLS, "rest", "[server]\ncolour = 1"),
            "unknown field `colour`",
        ),
        (
            config(GOOD_TLS, "rest", "").replace("127.0.0.1:8443", "localhost"),
            "listeners.https.listen",
        ),
        (
            config(GOOD_TLS, "rest", "").replace(
                "address = \"127.0.0.1:9002\"",
                "address = \"127.0.0.1:9002\"\nprotocol = \"h3\"",
            ),
            "upstreams.rest.protocol",
        ),
        (
            config(GOOD_TLS, "rest", "")
                .replace("[[upstreams]]", "[[upstreams]]\nconnect_timeout = \"soon\""),
            "upstreams.rest.connect_timeout",
        ),
        (
            config(GOOD_TLS, "rest", "[server"),
            "config file config.toml",
        ),
        (
            config(&GOOD_TLS.replace("chain.pem", "absent.pem"), "rest", ""),
            "cannot read absent.pem",
        ),
        (
            config(&GOOD_TLS.replace("chain.pem", "key.pem"), "rest", ""),
            "key.pem: no PEM certificate found",
        ),
        (
            config(&GOOD_TLS.replace("key.pem", "chain.pem"), "rest", ""),
            "chain.pem: no PEM private key found",
        ),
        (
            config(&GOOD_TLS.replace("key.pem", "other-key.pem"), "rest", ""),
            "other-key.pem does not match the leaf certificate in chain.pem",
        ),
    ];
    for (cfg, want) in cases {
        let (code, text) = check(&cfg);
        assert_ne!(
            code, 0,
            "check passed for a config that should fail with {want:?}"
        );
        assert!(text.contains(want), "expected {want:?} in:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

/// `check` lists every problem, not only the first.
#[test]
fn check_reports_every_problem_at_once() {
    let cfg = config(GOOD_TLS, "nope", "")
        .replace("address = \"127.0.0.1:9002\"", "address = \"nowhere\"");
    let (code, text) = check(&cfg);
    assert_ne!(code, 0);
    assert!(text.contains("unknown upstream \"nope\""), "{text}");
    assert!(text.contains("upstreams.rest.address"), "{text}");
}

/// Bad certificates on several listeners are all reported, each naming its listener and file.
#[test]
fn every_bad_certificate_is_reported() {
    let second = r#"
[[listeners]]
name = "grpc"
listen = "127.0.0.1:8444"
[listeners.tls]
cert = "chain.pem"
key = "missing-key.pem"
[[listeners.routes]]
upstream = "rest"
"#;
    let cfg = config(&GOOD_TLS.replace("chain.pem", "absent.pem"), "rest", "") + second;
    let (code, text) = check(&cfg);
    assert_ne!(code, 0);
    assert!(
        text.contains("listener https: cannot read absent.pem: No such file"),
        "{text}"
    );
    assert!(
        text.contains("listener grpc: cannot read missing-key.pem: No such file"),
        "{text}"
    );
    assert_eq!(
        text.matches("(os error 2)").count(),
        2,
        "reason repeated:\n{text}"
    );
}

/// A port still in use after the bind wait ends the process with exit 64 and a line naming the
/// listener and address, instead of a panic in a thread while the process lingers.
#[test]
fn port_in_use_exits_non_zero_naming_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    Pki::localhost().write(dir.path(), "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config(GOOD_TLS, "rest", "").replace("8443", &port.to_string());
    let mut proxy = Proxy::spawn(dir.path(), &cfg, &[]);
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(64));
    let log = proxy.log();
    assert!(
        log.contains(&format!("listener https: cannot bind 127.0.0.1:{port}")),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// The committed config.toml passes `check` on a fresh checkout, generating its development
/// certificates (which cover the names SuperMQ's clients dial).
#[test]
fn committed_default_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let repo_config = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    std::fs::copy(repo_config, dir.path().join("config.toml")).unwrap();
    let out = Command::new(binary())
        .args(["check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for listener in [
        "https 127.0.0.1:8443",
        "users 127.0.0.1:17002",
        "clients 127.0.0.1:17006",
    ] {
        assert!(text.contains(&format!("listener {listener} tls")), "{text}");
    }
    assert!(dir.path().join("certs/dev/server.crt").is_file());
    let _ = free_port;
}
