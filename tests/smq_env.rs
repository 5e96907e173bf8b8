//! SuperMQ's `SMQ_*` settings on a real proxy process: for a listener's certificate variables
//! (unset, half-set, set, missing path, garbage, inline PEM) the listener's actual behaviour and
//! the start-up outcome; an upstream's CA variable securing the gRPC connection; standalone mode;
//! and `check --print`.

mod common;

use std::process::Command;

use common::{
    Proxy, binary, curl, fingerprint, free_port, grpc_channel, local, served_fingerprint,
};
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use testkit::pki::Pki;

/// A listener `users` with no TLS in the file, in front of an h2c gRPC upstream `users-grpc`.
fn users_config(port: u16, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "users"
listen = "127.0.0.1:{port}"
[[listeners.routes]]
upstream = "users-grpc"

[[upstreams]]
name = "users-grpc"
address = "{upstream}"
protocol = "h2c"
"#
    )
}

async fn echo(channel: tonic::transport::Channel) -> Result<String, tonic::Status> {
    EchoClient::new(channel)
        .unary(EchoRequest {
            message: "hi".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().message)
}

async fn plaintext_channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("plaintext h2c connection to the proxy")
}

/// Starts the proxy with `env` and expects it to refuse to start; returns its log.
fn refused(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> String {
    let mut proxy = Proxy::spawn_env(dir, config, env);
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(64), "{}", proxy.log());
    proxy.log()
}

/// Unset or half-set: the listener runs plaintext (gRPC over h2c works) and a warning names the
/// missing variable and says the listener is NOT encrypted.
#[tokio::test(flavor = "multi_thread")]
async fn unset_or_half_set_variables_leave_the_listener_plaintext_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let upstream = testkit::grpc_upstream::start().await;
    let cert = files.cert.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[],
            "listener users is NOT encrypted: SMQ_USERS_SERVER_CERT and SMQ_USERS_SERVER_KEY are unset",
        ),
        (
            &[("SMQ_USERS_SERVER_CERT", cert)],
            "listener users is NOT encrypted: SMQ_USERS_SERVER_CERT is set but SMQ_USERS_SERVER_KEY is not",
        ),
        (
            &[("SMQ_USERS_SERVER_KEY", files.key.to_str().unwrap())],
            "listener users is NOT encrypted: SMQ_USERS_SERVER_KEY is set but SMQ_USERS_SERVER_CERT is not",
        ),
    ];
    for (env, warning) in cases {
        let port = free_port();
        let proxy = Proxy::start_env(
            dir.path(),
            &users_config(port, upstream.addr),
            &[local(port)],
            env,
        );
        assert_eq!(
            echo(plaintext_channel(port).await).await.unwrap(),
            "hi",
            "{env:?}"
        );
        let log = proxy.log();
        let line = log
            .lines()
            .find(|l| l.contains(warning))
            .unwrap_or_else(|| panic!("no {warning:?} in\n{log}"));
        assert!(line.contains("WARN"), "{line}");
    }
}

/// Both set, as paths or as inline PEM: the listener serves that certificate over TLS and gRPC
/// works through it.
#[tokio::test(flavor = "multi_thread")]
async fn set_variables_give_a_tls_listener_with_that_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::localhost();
    let files = pki.write(dir.path(), "");
    let upstream = testkit::grpc_upstream::start().await;
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let cases: [[(&str, &str); 2]; 3] = [
        [
            ("SMQ_USERS_SERVER_CERT", cert),
            ("SMQ_USERS_SERVER_KEY", key),
        ],
        [
            ("SMQ_USERS_SERVER_CERT", &pki.chain_pem),
            ("SMQ_USERS_SERVER_KEY", &pki.key_pem),
        ],
        [
            ("SMQ_USERS_GRPC_SERVER_CERT", cert),
            ("SMQ_USERS_GRPC_SERVER_KEY", key),
        ],
    ];
    for env in cases {
        let port = free_port();
        let proxy = Proxy::start_env(
            dir.path(),
            &users_config(port, upstream.addr),
            &[local(port)],
            &env,
        );
        assert_eq!(
            served_fingerprint(local(port), &pki.ca_pem).await,
            fingerprint(&pki.leaf_der),
            "{}",
            env[0].0
        );
        assert_eq!(
            echo(grpc_channel(local(port), &pki.ca_pem).await)
                .await
                .unwrap(),
            "hi"
        );
        assert!(!proxy.log().contains("NOT encrypted"), "{}", proxy.log());
        assert!(
            !proxy.log().contains("BEGIN"),
            "PEM text reached the log:\n{}",
            proxy.log()
        );
    }
}

/// A missing path, a value that is neither a path nor PEM, a garbage file, and broken inline PEM
/// all stop the start with exit 64 and a line naming the variable (and the path).
#[tokio::test(flavor = "multi_thread")]
async fn bad_certificate_variables_refuse_to_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::localhost().write(dir.path(), "");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let key = files.key.to_str().unwrap();
    let config = users_config(free_port(), "127.0.0.1:9".parse().unwrap());
    let missing = dir.path().join("nope.pem");
    let cases = [
        (
            missing.to_str().unwrap().to_owned(),
            format!(
                "cannot read {} (from SMQ_USERS_SERVER_CERT): No such file",
                missing.display()
            ),
        ),
        (
            "not-a-pem-or-path".to_owned(),
            "cannot read not-a-pem-or-path (from SMQ_USERS_SERVER_CERT): No such file".to_owned(),
        ),
        (
            garbage.to_str().unwrap().to_owned(),
            format!(
                "{} (from SMQ_USERS_SERVER_CERT): no PEM certificate found",
                garbage.display()
            ),
        ),
        (
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned(),
            "SMQ_USERS_SERVER_CERT (inline PEM): malformed PEM".to_owned(),
        ),
    ];
    for (value, want) in cases {
        let log = refused(
            dir.path(),
            &config,
            &[
                ("SMQ_USERS_SERVER_CERT", &value),
                ("SMQ_USERS_SERVER_KEY", key),
            ],
        );
        assert!(log.contains(&want), "expected {want:?} in:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// `SMQ_CLIENTS_CA_CERTS` secures the gRPC connection to upstream `clients`: the right CA works,
/// a wrong CA gives UNAVAILABLE and an error naming the upstream, and a bundle that cannot be
/// read or holds no certificate refuses the start naming the variable and the path.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_ca_variable_secures_the_grpc_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let edge = Pki::localhost();
    let edge_files = edge.write(d, "edge-");
    let up = Pki::localhost();
    let up_files = up.write(d, "up-");
    let wrong_files = Pki::localhost().write(d, "wrong-");
    let upstream = testkit::grpc_upstream::start_tls(&up.chain_pem, &up.key_pem, None).await;
    let config = |port: u16| {
        format!(
            r#"
[[listeners]]
name = "edge"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
upstream = "clients"

[[upstreams]]
name = "clients"
address = "{addr}"
protocol = "h2c"
"#,
            cert = edge_files.cert.display(),
            key = edge_files.key.display(),
            addr = upstream.addr,
        )
    };
    let port = free_port();
    let _ok = Proxy::start_env(
        d,
        &config(port),
        &[local(port)],
        &[("SMQ_CLIENTS_CA_CERTS", up_files.ca.to_str().unwrap())],
    );
    assert_eq!(
        echo(grpc_channel(local(port), &edge.ca_pem).await)
            .await
            .unwrap(),
        "hi"
    );

    let port = free_port();
    let wrong = Proxy::start_env(
        d,
        &config(port),
        &[local(port)],
        &[("SMQ_CLIENTS_CA_CERTS", wrong_files.ca.to_str().unwrap())],
    );
    let err = echo(grpc_channel(local(port), &edge.ca_pem).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    wrong.wait_for_log("upstream=\"clients\"");
    let log = wrong.log();
    let line = log
        .lines()
        .find(|l| l.contains("upstream=\"clients\""))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("invalid peer certificate"),
        "{line}"
    );

    let missing = d.join("absent-ca.pem");
    let log = refused(
        d,
        &config(free_port()),
        &[("SMQ_CLIENTS_CA_CERTS", missing.to_str().unwrap())],
    );
    assert!(
        log.contains(&format!(
            "upstream clients: cannot read {} (from SMQ_CLIENTS_CA_CERTS): No such file",
            missing.display()
        )),
        "{log}"
    );
    let empty = d.join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let log = refused(
        d,
        &config(free_port()),
        &[("SMQ_CLIENTS_CA_CERTS", empty.to_str().unwrap())],
    );
    assert!(
        log.contains(&format!(
            "upstream clients: {} (from SMQ_CLIENTS_CA_CERTS): no PEM certificate found",
            empty.display()
        )),
        "{log}"
    );
}

const TOKEN: &str = "st4ndalone-T0ken";

fn standalone_config(port: u16, cert: &str, key: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "https"
listen = "127.0.0.1:{port}"
[listeners.tls]
cert = "{cert}"
key = "{key}"
[[listeners.routes]]
path_prefix = "/health"
upstream = "clients-http"
[[listeners.routes]]
path_prefix = "/users"
upstream = "users-http"
[[listeners.routes]]
path_prefix = "/*/clients"
upstream = "clients-http"

[[upstreams]]
name = "clients-http"
address = "{upstream}"
[[upstreams]]
name = "users-http"
address = "{upstream}"
"#
    )
}

/// Standalone mode: Clients API requests without the right bearer token get 401 at the edge
/// (the upstream never sees them), with it they are proxied; `/health` stays open; Users routes
/// are gone; the token never reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn standalone_mode_guards_the_clients_api_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::localhost().write(dir.path(), "");
    let upstream = testkit::http_upstream::start().await;
    let port = free_port();
    let cfg = standalone_config(
        port,
        files.cert.to_str().unwrap(),
        files.key.to_str().unwrap(),
        upstream.addr,
    );
    let env = [
        ("SMQ_CLIENTS_STANDALONE_EMAIL", "admin@example.com"),
        ("SMQ_CLIENTS_STANDALONE_TOKEN", TOKEN),
    ];
    let proxy = Proxy::start_env(dir.path(), &cfg, &[local(port)], &env);
    let ca = files.ca.to_str().unwrap();
    let get = |path: &str, auth: Option<&str>| {
        let url = format!("https://localhost:{port}{path}");
        let header = auth.map(|a| format!("Authorization: {a}"));
        let mut args = vec![
            "--cacert",
            ca,
            "--write-out",
            "\n%{http_code}",
            url.as_str(),
        ];
        if let Some(h) = &header {
            args.extend(["-H", h.as_str()]);
        }
        let out = String::from_utf8(curl(&args).stdout).unwrap();
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    assert_eq!(get("/d1/clients", None).0, "401");
    assert_eq!(get("/d1/clients", Some("Bearer wrong")).0, "401");
    assert_eq!(get("/d1/clients", Some(&format!("Basic {TOKEN}"))).0, "401");
    assert_eq!(
        upstream.connections(),
        0,
        "a refused request reached the upstream"
    );
    let (code, body) = get("/d1/clients", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, "200");
    assert!(body.starts_with("GET /d1/clients\n"), "{body}");
    assert_eq!(get("/health", None).0, "200");
    assert_eq!(
        get("/users", Some(&format!("Bearer {TOKEN}"))).0,
        "404",
        "Users routes must be dropped"
    );
    proxy.wait_for_log("standalone mode for admin@example.com");
    assert!(!proxy.log().contains(TOKEN), "the token reached the log");
}

/// `check --print` shows every effective value with its source and redacts secrets.
#[test]
fn check_print_shows_sources_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let files = Pki::localhost().write(dir.path(), "");
    let cfg = standalone_config(
        8443,
        "unused.pem",
        "unused.key",
        "127.0.0.1:9006".parse().unwrap(),
    )
    .replace(
        "[listeners.tls]\ncert = \"unused.pem\"\nkey = \"unused.key\"\n",
        "",
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    let key_pem = std::fs::read_to_string(&files.key).unwrap();
    let out = Command::new(binary())
        .args(["check", "--print", "--config", "config.toml"])
        .current_dir(dir.path())
        .env("SMQ_HTTPS_SERVER_CERT", &files.cert)
        .env("SMQ_HTTPS_SERVER_KEY", &key_pem)
        .env("SMQ_CLIENTS_STANDALONE_EMAIL", "admin@example.com")
        .env("SMQ_CLIENTS_STANDALONE_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!(
            "listeners.https.tls.cert = \"{}\"  # env SMQ_HTTPS_SERVER_CERT",
            files.cert.display()
        ),
        "listeners.https.tls.key = \"<inline PEM>\"  # env SMQ_HTTPS_SERVER_KEY".to_owned(),
        "listeners.https.listen = \"127.0.0.1:8443\"  # file".to_owned(),
        "server.threads = \"2\"  # default".to_owned(),
        "upstreams.clients-http.tls.mode = \"disable\"  # default".to_owned(),
        "standalone.token = \"<redacted>\"  # env SMQ_CLIENTS_STANDALONE_TOKEN".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains(TOKEN) && !text.contains("PRIVATE KEY"),
        "a secret was printed:\n{text}"
    );
}
