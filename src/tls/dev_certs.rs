//! Development certificates: a throwaway CA and a server certificate for the committed default
//! config, made with rcgen when `[dev_certs]` is configured and the files are absent. A config
//! without `[dev_certs]` (any production config) never generates anything.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Names the development server certificate covers: loopback, and the host names SuperMQ's gRPC
/// clients dial (they check the dialled name against the SAN).
pub const DEV_SANS: &[&str] = &["localhost", "127.0.0.1", "::1", "users", "clients"];

/// CA certificate file name inside the dev directory.
pub const CA_FILE: &str = "ca.crt";
/// Server chain file name inside the dev directory.
pub const CERT_FILE: &str = "server.crt";
/// Server key file name inside the dev directory.
pub const KEY_FILE: &str = "server.key";

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// rcgen refused the parameters.
    #[error("cannot generate development certificates: {0}")]
    Generate(rcgen::Error),
    /// Writing a file failed.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

// By hand rather than `#[from]`, which would also make the rcgen error a `source` and have it
// printed twice in the error chain.
impl From<rcgen::Error> for DevCertError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e)
    }
}

/// How long the development server certificate is valid: under the one-year limit clients
/// enforce. `ensure` renews it when it is close to expiry.
const LEAF_VALIDITY: time::Duration = time::Duration::days(365);
/// How long the development CAs are valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
/// `ensure` regenerates the files when the server certificate expires within this time.
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// What `ensure` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All three files were already there; nothing was touched.
    Present,
    /// New files were written.
    Generated,
}

/// Creates the CA and server files in `dir` unless all of them exist and the server
/// certificate is good for more than 30 days.
pub fn ensure(dir: &Path) -> Result<Outcome, DevCertError> {
    let present = [CA_FILE, CERT_FILE, KEY_FILE]
        .iter()
        .all(|f| dir.join(f).is_file());
    if present && !expires_soon(&dir.join(CERT_FILE)) {
        return Ok(Outcome::Present);
    }
    generate(dir)?;
    Ok(Outcome::Generated)
}

/// Whether the first certificate in `path` expires within [`RENEW_BEFORE`] (or cannot be read,
/// in which case the proxy's own checks will name the problem after regeneration).
fn expires_soon(path: &Path) -> bool {
    let Ok(pem) = fs::read(path) else { return true };
    let Some(summary) = crate::tls::pem::parse_chain(&pem, &path.display().to_string())
        .ok()
        .and_then(|chain| chain.first().and_then(crate::tls::pem::summarize))
    else {
        return true;
    };
    let deadline = time::OffsetDateTime::now_utc() + RENEW_BEFORE;
    summary.not_after_unix < deadline.unix_timestamp()
}

/// Writes a fresh CA (`ca.crt`) and server chain (`server.crt`: leaf then intermediate;
/// `server.key`) into `dir`, replacing what is there. The CA keys are not kept: nothing else can
/// be signed with them.
pub fn generate(dir: &Path) -> Result<(), DevCertError> {
    fs::create_dir_all(dir).map_err(|error| DevCertError::Write {
        path: dir.to_owned(),
        error,
    })?;
    // Root → intermediate → server, as production PKIs are laid out, so clients see (and the
    // proxy serves) a real chain.
    let ca =
        CertifiedIssuer::self_signed(ca_params("smq-edge development CA")?, KeyPair::generate()?)?;
    let mut int_params = ca_params("smq-edge development intermediate")?;
    int_params.use_authority_key_identifier_extension = true;
    let intermediate = CertifiedIssuer::signed_by(int_params, KeyPair::generate()?, &ca)?;

    let mut params =
        CertificateParams::new(DEV_SANS.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    params.distinguished_name = name("localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Path validators (sslyze, browsers) require the authority key identifier; browsers and the
    // Mozilla profile refuse leaves valid for more than a year.
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + LEAF_VALIDITY;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &intermediate)?;

    write(&dir.join(CA_FILE), ca.pem().as_bytes(), 0o644)?;
    let chain = format!("{}{}", cert.pem(), intermediate.pem());
    write(&dir.join(CERT_FILE), chain.as_bytes(), 0o644)?;
    write(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
    Ok(())
}

fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + CA_VALIDITY;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "smq-edge development");
    dn
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DevCertError> {
    let err = |error| DevCertError::Write {
        path: path.to_owned(),
        error,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::store::CertStore;

    #[test]
    fn generated_pair_passes_the_proxy_checks_and_names_every_dev_host() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ensure(dir.path()).unwrap(), Outcome::Generated);
        assert_eq!(ensure(dir.path()).unwrap(), Outcome::Present);
        let files = crate::config::TlsFiles {
            cert: crate::config::PemSource::file(dir.path().join(CERT_FILE)),
            key: crate::config::PemSource::file(dir.path().join(KEY_FILE)),
        };
        let store = CertStore::load_pair("dev".into(), &files, crate::tls::provider()).unwrap();
        assert_eq!(store.current().cert.len(), 2, "leaf and intermediate");
        let summary = store.summary().unwrap();
        for san in DEV_SANS {
            assert!(
                summary.sans.iter().any(|s| s == san),
                "{san} missing from {summary:?}"
            );
        }
    }

    #[test]
    fn a_server_certificate_close_to_expiry_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
        std::fs::write(
            dir.path().join(CERT_FILE),
            params.self_signed(&key).unwrap().pem(),
        )
        .unwrap();
        assert_eq!(ensure(dir.path()).unwrap(), Outcome::Generated);
        assert_eq!(ensure(dir.path()).unwrap(), Outcome::Present);
    }
}
