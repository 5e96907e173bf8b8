use super::*;

use crate::config::{PathPrefix, PemSource, TlsMode, UpstreamProtocol};
use env::NoVars;

fn build_str(text: &str) -> Result<Config, Vec<String>> {
    build_env(text, &[])
}

fn build_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let file = parse(text).map_err(|e| vec![e])?;
    let vars: &dyn Vars = if vars.is_empty() { &NoVars } else { &vars };
    build(file, vars).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

fn effective<'a>(c: &'a Config, key: &str) -> (&'a str, String) {
    let e = c
        .effective
        .iter()
        .find(|e| e.key == key)
        .unwrap_or_else(|| panic!("{key} not recorded"));
    (e.value.as_str(), e.origin.to_string())
}

const MINIMAL: &str = r#"
[[listeners]]
name = "https"
listen = "127.0.0.1:8443"
[listeners.tls]
cert = "c.pem"
key = "k.pem"
[[listeners.routes]]
path_prefix = "/api/"
strip_prefix = true
upstream = "rest"

[[upstreams]]
name = "rest"
address = "127.0.0.1:9002"
"#;

#[test]
fn upstream_keepalive_comes_from_the_file() {
    let c = build_str(&format!("[server]\nupstream_keepalive = 0\n{MINIMAL}")).unwrap();
    assert_eq!(c.upstream_keepalive, 0);
    let err = build_str(&format!("[server]\nupstream_keepalive = -1\n{MINIMAL}")).unwrap_err();
    assert!(err[0].contains("server.upstream_keepalive"), "{err:?}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = build_str(MINIMAL).unwrap();
    assert_eq!(c.threads, DEFAULT_THREADS);
    assert_eq!(c.upstream_keepalive, DEFAULT_UPSTREAM_KEEPALIVE);
    assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    let u = &c.upstreams[0];
    assert_eq!(u.protocol, UpstreamProtocol::Http1);
    assert_eq!(u.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(u.read_timeout, Some(DEFAULT_HTTP1_READ_TIMEOUT));
    assert_eq!(u.max_h2_streams, DEFAULT_MAX_H2_STREAMS);
    let l = &c.listeners[0];
    assert_eq!(l.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(l.tls.as_ref().unwrap().cert, PemSource::file("c.pem"));
    assert!(l.routes[0].strip_prefix);
    assert_eq!(l.routes[0].upstream, 0);
}

#[test]
fn h2c_upstreams_have_no_read_timeout_by_default() {
    let text = MINIMAL.replace(
        "address = \"127.0.0.1:9002\"",
        "address = \"127.0.0.1:9002\"\nprotocol = \"h2c\"",
    );
    let c = build_str(&text).unwrap();
    assert_eq!(c.upstreams[0].read_timeout, None);
}

#[test]
fn durations_parse_and_zero_disables() {
    let text = MINIMAL.replace(
        "[[upstreams]]",
        "[server]\nshutdown_grace = \"2s\"\n[[upstreams]]\nread_timeout = \"0s\"\nconnect_timeout = \"250ms\"",
    );
    let c = build_str(&text).unwrap();
    assert_eq!(c.shutdown_grace, Duration::from_secs(2));
    assert_eq!(c.upstreams[0].read_timeout, None);
    assert_eq!(c.upstreams[0].connect_timeout, Duration::from_millis(250));
}

#[test]
fn a_log_level_that_is_not_a_filter_is_refused() {
    let err = build_str(&format!("[log]\nlevel = \"no[t valid\"\n{MINIMAL}")).unwrap_err();
    assert!(err[0].starts_with("log.level: "), "{err:?}");
    let c = build_str(&format!(
        "[log]\nlevel = \"warn,smq_edge=debug\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.log_level.as_deref(), Some("warn,smq_edge=debug"));
}

#[test]
fn wrong_types_and_unknown_keys_name_the_key() {
    let err = build_str(&format!("[server]\nthreads = \"two\"\n{MINIMAL}")).unwrap_err();
    assert!(
        err[0].starts_with("server.threads: invalid type"),
        "{err:?}"
    );
    let err = build_str(&MINIMAL.replace("strip_prefix = true", "strip = true")).unwrap_err();
    assert!(err[0].contains("unknown field `strip`"), "{err:?}");
}

#[test]
fn every_problem_is_reported() {
    let text = MINIMAL
        .replace("upstream = \"rest\"", "upstream = \"nope\"")
        .replace("127.0.0.1:8443", "nowhere")
        .replace(
            "address = \"127.0.0.1:9002\"",
            "address = \"127.0.0.1:9002\"\nprotocol = \"h3\"",
        );
    let err = build_str(&text).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.starts_with("upstreams.rest.protocol:")),
        "{err:?}"
    );
    assert!(
        err.iter().any(|e| e.starts_with("listeners.https.listen:")),
        "{err:?}"
    );
    assert!(err.iter().any(|e| e.starts_with("listeners.https.routes[0].upstream: unknown upstream \"nope\"")), "{err:?}");
}

#[test]
fn duplicate_names_and_addresses_are_refused() {
    let text = format!(
        "{MINIMAL}{}",
        &MINIMAL[MINIMAL.find("[[upstreams]]").unwrap()..]
    );
    let err = build_str(&text).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.contains("duplicate upstream name \"rest\"")),
        "{err:?}"
    );
    let listener = &MINIMAL[..MINIMAL.find("[[upstreams]]").unwrap()];
    let text = format!("{MINIMAL}{}", listener.replace("\"https\"", "\"other\""));
    let err = build_str(&text).unwrap_err();
    assert!(
        err.iter()
            .any(|e| e.contains("also used by listener \"https\"")),
        "{err:?}"
    );
}

#[test]
fn strip_prefix_needs_a_prefix() {
    let err = build_str(&MINIMAL.replace("path_prefix = \"/api/\"\n", "")).unwrap_err();
    assert!(
        err[0].contains("strip_prefix: needs a path_prefix"),
        "{err:?}"
    );
}

#[test]
fn path_prefixes_are_checked() {
    assert!(PathPrefix::parse("users").is_err());
    assert!(PathPrefix::parse("/a//b").is_err());
    assert!(PathPrefix::parse("/a*").is_err());
    let p = PathPrefix::parse("/*/clients/").unwrap();
    assert_eq!(p.segments, vec![None, Some("clients".to_owned())]);
    assert!(p.trailing_slash);
    assert!(PathPrefix::parse("/").unwrap().segments.is_empty());
}

#[test]
fn no_listeners_is_an_error() {
    let err = build_str("").unwrap_err();
    assert!(err[0].starts_with("listeners:"), "{err:?}");
}

/// A listener `users` without TLS in the file and an upstream `clients` (gRPC), SuperMQ-style.
const SMQ: &str = r#"
[[listeners]]
name = "users"
listen = "127.0.0.1:17002"
[[listeners.routes]]
upstream = "users"
[[listeners]]
name = "edge"
listen = "127.0.0.1:8443"
[[listeners.routes]]
path_prefix = "/health"
upstream = "clients-http"
[[listeners.routes]]
path_prefix = "/users"
upstream = "users-http"

[[upstreams]]
name = "users"
address = "127.0.0.1:7002"
protocol = "h2c"
[[upstreams]]
name = "users-http"
address = "127.0.0.1:9002"
[[upstreams]]
name = "clients-http"
address = "127.0.0.1:9006"
"#;

#[test]
fn listener_without_tls_is_plaintext_with_a_warning_naming_the_variables() {
    let c = build_env(SMQ, &[]).unwrap();
    assert!(c.listeners[0].tls.is_none());
    let n = c
        .notices
        .iter()
        .find(|n| n.message.contains("listener users"))
        .unwrap();
    assert!(n.warn);
    assert!(n.message.contains("NOT encrypted"), "{n:?}");
    assert!(
        n.message
            .contains("SMQ_USERS_SERVER_CERT and SMQ_USERS_SERVER_KEY are unset"),
        "{n:?}"
    );
}

#[test]
fn both_variables_enable_tls_and_are_recorded_as_env() {
    let c = build_env(
        SMQ,
        &[
            ("SMQ_USERS_SERVER_CERT", "/c.pem"),
            ("SMQ_USERS_SERVER_KEY", "/k.pem"),
        ],
    )
    .unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert.path(), Some(std::path::Path::new("/c.pem")));
    assert_eq!(tls.cert.to_string(), "/c.pem (from SMQ_USERS_SERVER_CERT)");
    assert_eq!(
        effective(&c, "listeners.users.tls.key"),
        ("/k.pem", "env SMQ_USERS_SERVER_KEY".into())
    );
}

#[test]
fn half_set_is_plaintext_and_names_the_missing_variable() {
    let c = build_env(SMQ, &[("SMQ_USERS_SERVER_KEY", "/k.pem")]).unwrap();
    assert!(c.listeners[0].tls.is_none());
    let n = c
        .notices
        .iter()
        .find(|n| n.message.contains("listener users"))
        .unwrap();
    assert!(n.warn);
    assert!(
        n.message
            .contains("SMQ_USERS_SERVER_KEY is set but SMQ_USERS_SERVER_CERT is not"),
        "{n:?}"
    );
    assert!(n.message.contains("NOT encrypted"), "{n:?}");
}

#[test]
fn env_overrides_the_file() {
    let text = SMQ.replacen(
        "[[listeners.routes]]\nupstream = \"users\"",
        "[listeners.tls]\ncert = \"file.crt\"\nkey = \"file.key\"\n[[listeners.routes]]\nupstream = \"users\"",
        1,
    );
    let c = build_env(&text, &[]).unwrap();
    assert_eq!(
        c.listeners[0].tls.as_ref().unwrap().cert,
        PemSource::file("file.crt")
    );
    assert_eq!(
        effective(&c, "listeners.users.tls.cert"),
        ("file.crt", "file".into())
    );
    let c = build_env(&text, &[("SMQ_USERS_SERVER_CERT", "/env.crt")]).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert.path(), Some(std::path::Path::new("/env.crt")));
    assert_eq!(tls.key, PemSource::file("file.key"));
}

#[test]
fn inline_pem_is_recognised_and_never_printed() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let c = build_env(
        SMQ,
        &[
            ("SMQ_USERS_SERVER_CERT", pem),
            ("SMQ_USERS_SERVER_KEY", "/k.pem"),
        ],
    )
    .unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert!(matches!(tls.cert, PemSource::Inline { .. }));
    assert_eq!(tls.cert.to_string(), "SMQ_USERS_SERVER_CERT (inline PEM)");
    assert_eq!(effective(&c, "listeners.users.tls.cert").0, "<inline PEM>");
}

#[test]
fn upstream_ca_variable_turns_on_verify_full_with_sni() {
    let c = build_env(SMQ, &[("SMQ_USERS_CA_CERTS", "/ca.pem")]).unwrap();
    let tls = c.upstreams[0].tls.as_ref().unwrap();
    assert_eq!(tls.mode, TlsMode::VerifyFull);
    assert_eq!(tls.sni, "127.0.0.1");
    assert_eq!(
        effective(&c, "upstreams.users.tls.ca").1,
        "env SMQ_USERS_CA_CERTS"
    );
    assert_eq!(
        effective(&c, "upstreams.users.tls.mode"),
        ("verify-full", "default".into())
    );
    assert!(
        c.upstreams[1].tls.is_none(),
        "other upstreams stay plaintext"
    );
}

#[test]
fn tls_mode_variable_sets_the_mode() {
    let c = build_env(
        SMQ,
        &[
            ("SMQ_USERS_CA_CERTS", "/ca.pem"),
            ("SMQ_USERS_TLS_MODE", "verify-ca"),
        ],
    )
    .unwrap();
    assert_eq!(c.upstreams[0].tls.as_ref().unwrap().mode, TlsMode::VerifyCa);
    let c = build_env(SMQ, &[("SMQ_USERS_TLS_MODE", "required")]).unwrap();
    assert_eq!(c.upstreams[0].tls.as_ref().unwrap().mode, TlsMode::Require);
    let c = build_env(
        SMQ,
        &[
            ("SMQ_USERS_CA_CERTS", "/ca.pem"),
            ("SMQ_USERS_TLS_MODE", "disabled"),
        ],
    )
    .unwrap();
    assert!(c.upstreams[0].tls.is_none());
    let err = build_env(SMQ, &[("SMQ_USERS_TLS_MODE", "verify-full")]).unwrap_err();
    assert!(
        err[0].contains("needs a CA bundle to verify against: set SMQ_USERS_CA_CERTS"),
        "{err:?}"
    );
    let err = build_env(SMQ, &[("SMQ_USERS_TLS_MODE", "sometimes")]).unwrap_err();
    assert!(
        err[0].starts_with("SMQ_USERS_TLS_MODE: unknown TLS mode"),
        "{err:?}"
    );
}

#[test]
fn half_set_client_certificate_is_an_error_naming_the_missing_variable() {
    let err = build_env(
        SMQ,
        &[
            ("SMQ_USERS_CA_CERTS", "/ca.pem"),
            ("SMQ_USERS_GRPC_CLIENT_CERT", "/c.pem"),
        ],
    )
    .unwrap_err();
    assert!(err[0].starts_with("SMQ_USERS_GRPC_CLIENT_KEY:"), "{err:?}");
}

#[test]
fn standalone_keeps_only_clients_routes_and_hides_the_token() {
    let c = build_env(
        SMQ,
        &[
            ("SMQ_CLIENTS_STANDALONE_EMAIL", "admin@example.com"),
            ("SMQ_CLIENTS_STANDALONE_TOKEN", "s3cret-token"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.listeners.len(),
        1,
        "the users listener has no Clients route left"
    );
    assert_eq!(c.listeners[0].routes.len(), 1);
    assert_eq!(c.upstreams.len(), 1);
    assert_eq!(c.upstreams[0].name, "clients-http");
    let s = c.standalone.as_ref().unwrap();
    assert!(s.token.matches(b"s3cret-token"));
    assert!(!s.token.matches(b"s3cret-tokeN"));
    let everything = format!("{c:?}");
    assert!(!everything.contains("s3cret"), "token leaked: {everything}");
    assert_eq!(effective(&c, "standalone.token").0, "<redacted>");
    let err = build_env(SMQ, &[("SMQ_CLIENTS_STANDALONE_TOKEN", "t")]).unwrap_err();
    assert!(
        err[0].starts_with("SMQ_CLIENTS_STANDALONE_EMAIL:"),
        "{err:?}"
    );
}

#[test]
fn grpc_aliases_map_to_the_grpc_listener_when_it_exists() {
    let text = SMQ.replacen("name = \"edge\"", "name = \"users-grpc\"", 1);
    let c = build_env(
        &text,
        &[
            ("SMQ_USERS_GRPC_SERVER_CERT", "/g.crt"),
            ("SMQ_USERS_GRPC_SERVER_KEY", "/g.key"),
            ("SMQ_USERS_HTTP_SERVER_CERT", "/h.crt"),
            ("SMQ_USERS_HTTP_SERVER_KEY", "/h.key"),
        ],
    )
    .unwrap();
    let users = c.listeners.iter().find(|l| l.name == "users").unwrap();
    let grpc = c.listeners.iter().find(|l| l.name == "users-grpc").unwrap();
    assert_eq!(
        users.tls.as_ref().unwrap().cert.path(),
        Some(std::path::Path::new("/h.crt"))
    );
    assert_eq!(
        grpc.tls.as_ref().unwrap().cert.path(),
        Some(std::path::Path::new("/g.crt"))
    );
}

const TCP: &str = r#"
[[listeners]]
name = "mqtt"
listen = "127.0.0.1:8883"
protocol = "tcp"
[[listeners.routes]]
upstream = "broker"

[[upstreams]]
name = "broker"
address = "127.0.0.1:1883"
protocol = "tcp"
proxy_protocol = "v2"
"#;

#[test]
fn tcp_listener_gets_a_generous_idle_timeout_and_proxy_protocol() {
    let c = build_str(TCP).unwrap();
    assert_eq!(
        c.listeners[0].protocol,
        crate::config::ListenerProtocol::Tcp {
            idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT
        }
    );
    assert!(c.upstreams[0].proxy_protocol);
    assert_eq!(c.upstreams[0].read_timeout, None);
}

#[test]
fn tcp_listener_routes_are_checked() {
    let err = build_str(&TCP.replace(
        "[[listeners.routes]]\nupstream",
        "[[listeners.routes]]\npath_prefix = \"/x\"\nupstream",
    ))
    .unwrap_err();
    assert!(err[0].contains("holds only `upstream`"), "{err:?}");
    let err = build_str(&TCP.replace("protocol = \"tcp\"\nproxy", "protocol = \"http1\"\nproxy"))
        .unwrap_err();
    assert!(err[0].contains("is not protocol = \"tcp\""), "{err:?}");
    let err = build_str(&TCP.replace(
        "protocol = \"tcp\"\n[[listeners.routes]]",
        "[[listeners.routes]]",
    ))
    .unwrap_err();
    assert!(err[0].contains("only tcp listeners can use it"), "{err:?}");
    let err = build_str(&TCP.replace("\"v2\"", "\"v1\"")).unwrap_err();
    assert!(
        err[0].starts_with("upstreams.broker.proxy_protocol"),
        "{err:?}"
    );
}
