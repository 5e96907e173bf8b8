use super::*;

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair};

fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, pem::sha256_hex(cert.der()))
}

fn served(store: &CertStore) -> String {
    pem::sha256_hex(&store.current().cert[0])
}

fn store(dir: &Path) -> (CertStore, String) {
    let (cert, key, fp) = write_pair(dir, "one");
    let files = TlsFiles {
        cert: PemSource::file(cert),
        key: PemSource::file(key),
    };
    let store = CertStore::load_pair("test".into(), &files, crate::tls::provider()).unwrap();
    (store, fp)
}

const SETTLE: Duration = Duration::from_secs(5);

#[test]
fn unchanged_files_are_not_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Unchanged
    ));
    assert_eq!(store.generation(), 0);
}

#[test]
fn a_new_valid_pair_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (store, old) = store(dir.path());
    let (_, _, new) = write_pair(dir.path(), "two");
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Applied
    ));
    assert_ne!(old, new);
    assert_eq!(served(&store), new);
    assert_eq!(store.generation(), 1);
}

#[test]
fn bad_content_keeps_the_old_pair_and_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, old) = store(dir.path());
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Failed(PemError::NoCertificate { .. })
    ));
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::StillFailing
    ));
    assert_eq!(served(&store), old);
    assert!(
        store
            .reload_status()
            .1
            .unwrap()
            .contains("no PEM certificate found")
    );
    std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Failed(PemError::Read { .. })
    ));
    let (_, _, new) = write_pair(dir.path(), "three");
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Applied
    ));
    assert_eq!(served(&store), new);
}

#[test]
fn restoring_the_served_content_clears_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    assert!(
        store.reload_status().0.is_some(),
        "the start-up load counts"
    );
    let good = std::fs::read(dir.path().join("cert.pem")).unwrap();
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Failed(_)
    ));
    assert!(store.reload_status().1.is_some());
    std::fs::write(dir.path().join("cert.pem"), good).unwrap();
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Restored
    ));
    assert_eq!(store.reload_status().1, None);
    assert!(matches!(
        store.reload(Instant::now(), SETTLE),
        Reload::Unchanged
    ));
}

#[test]
fn a_half_written_pair_settles_before_it_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (store, old) = store(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (new_cert, new_key, new) = write_pair(other.path(), "two");
    std::fs::copy(&new_cert, dir.path().join("cert.pem")).unwrap();
    let t0 = Instant::now();
    assert!(matches!(store.reload(t0, SETTLE), Reload::Settling));
    assert!(matches!(
        store.reload(t0 + SETTLE / 2, SETTLE),
        Reload::Settling
    ));
    assert_eq!(served(&store), old);
    std::fs::copy(&new_key, dir.path().join("key.pem")).unwrap();
    assert!(matches!(
        store.reload(t0 + SETTLE / 2, SETTLE),
        Reload::Applied
    ));
    assert_eq!(served(&store), new);
    // A mismatch that outlives the settle window is a failure.
    let (stray, _, _) = write_pair(other.path(), "stray");
    std::fs::copy(&stray, dir.path().join("cert.pem")).unwrap();
    let t1 = Instant::now();
    assert!(matches!(store.reload(t1, SETTLE), Reload::Settling));
    assert!(matches!(
        store.reload(t1 + SETTLE, SETTLE),
        Reload::Failed(PemError::KeyMismatch { .. })
    ));
    assert_eq!(served(&store), new);
}

#[test]
fn a_ca_bundle_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "").unwrap();
    assert!(matches!(
        CaStore::load_bundle("ca".into(), &PemSource::file(path)),
        Err(PemError::NoCertificate { .. })
    ));
}

#[test]
fn replaced_material_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store(dir.path());
    let old = Arc::downgrade(&store.current());
    for name in ["two", "three", "four"] {
        write_pair(dir.path(), name);
        assert!(matches!(
            store.reload(Instant::now(), SETTLE),
            Reload::Applied
        ));
    }
    assert!(
        old.upgrade().is_none(),
        "the first certificate is still held after three swaps"
    );
}
