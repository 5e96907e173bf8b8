use super::*;

use rcgen::{CertificateParams, KeyPair};

fn self_signed(sans: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn load(cert: &str, key: &str) -> Result<Arc<CertifiedKey>, PemError> {
    let chain = parse_chain(cert.as_bytes(), "t.pem")?;
    let key = parse_key(key.as_bytes(), "k.pem")?;
    certified_key(
        chain,
        key,
        "t.pem",
        "k.pem",
        &crate::tls::provider(),
        SystemTime::now(),
    )
}

#[test]
fn matching_pair_loads_and_is_summarized() {
    let (cert, key) = self_signed(&["localhost", "127.0.0.1"]);
    let ck = load(&cert, &key).unwrap();
    let s = summarize(&ck.cert[0]).unwrap();
    assert_eq!(s.sans, vec!["localhost", "127.0.0.1"]);
    assert_eq!(s.sha256.len(), 64);
}

#[test]
fn mismatched_key_is_refused() {
    let (cert, _) = self_signed(&["a"]);
    let (_, other_key) = self_signed(&["a"]);
    assert!(matches!(
        load(&cert, &other_key),
        Err(PemError::KeyMismatch { .. })
    ));
}

#[test]
fn key_is_checked_against_the_leaf_not_an_intermediate() {
    let (leaf, _) = self_signed(&["leaf"]);
    let (intermediate, intermediate_key) = self_signed(&["int"]);
    let chain = format!("{leaf}{intermediate}");
    assert!(matches!(
        load(&chain, &intermediate_key),
        Err(PemError::KeyMismatch { .. })
    ));
}

#[test]
fn garbage_empty_and_truncated_input_name_the_problem() {
    let p = "x.pem";
    assert!(matches!(
        parse_chain(b"", p),
        Err(PemError::NoCertificate { .. })
    ));
    assert!(matches!(
        parse_chain(b"hello world", p),
        Err(PemError::NoCertificate { .. })
    ));
    let (cert, key) = self_signed(&["a"]);
    let truncated = &cert[..cert.len() / 2];
    let err = parse_chain(truncated.as_bytes(), p).unwrap_err();
    assert!(matches!(err, PemError::Malformed { .. }));
    assert_eq!(
        err.to_string(),
        "x.pem: malformed PEM: no \"-----END CERTIFICATE-----\" line (truncated file?)"
    );
    assert!(matches!(
        parse_key(cert.as_bytes(), p),
        Err(PemError::NoKey { .. })
    ));
    assert!(matches!(
        parse_chain(key.as_bytes(), p),
        Err(PemError::NoCertificate { .. })
    ));
    let bad_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = parse_chain(bad_der.as_bytes(), p).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.pem: malformed PEM: certificate #1"),
        "{err}"
    );
}

#[test]
fn expired_and_not_yet_valid_leaves_are_refused() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["a".to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let cert = params.self_signed(&key).unwrap().pem();
    let err = load(&cert, &key.serialize_pem()).unwrap_err();
    assert!(err.to_string().contains("has expired"), "{err}");
    params.not_before = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let cert = params.self_signed(&key).unwrap().pem();
    let err = load(&cert, &key.serialize_pem()).unwrap_err();
    assert!(err.to_string().contains("is not yet valid"), "{err}");
}
