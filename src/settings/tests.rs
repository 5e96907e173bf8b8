use super::*;

fn build_str(text: &str) -> Result<Config, Vec<String>> {
    let file = parse(text).map_err(|e| vec![e])?;
    build(file).map_err(|e| e.0.iter().map(ToString::to_string).collect())
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
fn minimal_config_gets_defaults() {
    let c = build_str(MINIMAL).unwrap();
    assert_eq!(c.threads, DEFAULT_THREADS);
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
