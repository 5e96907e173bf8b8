//! PEM → checked TLS material. Pure functions over bytes: a certificate chain, a private key that
//! matches the chain's leaf, and a summary of the leaf for logs. Everything pingora or rustls will
//! later see is parsed here first, because pingora panics on bad DER.

use std::sync::Arc;
use std::time::SystemTime;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{CertKey, WrappedX509, parse_x509};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why material was refused. Every variant names the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read (missing, permissions, a directory).
    #[error("cannot read {file}: {error}")]
    Read {
        /// The file (or inline PEM) it came from, as named to the operator.
        file: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{file}: no PEM certificate found")]
    NoCertificate {
        /// The file (or inline PEM) it came from, as named to the operator.
        file: String,
    },
    /// The file holds no private key block.
    #[error("{file}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file (or inline PEM) it came from, as named to the operator.
        file: String,
    },
    /// A block is malformed: bad base64, missing END line, or DER that is not a certificate.
    #[error("{file}: malformed PEM: {reason}")]
    Malformed {
        /// The file (or inline PEM) it came from, as named to the operator.
        file: String,
        /// What the parser said.
        reason: String,
    },
    /// The key cannot be used for TLS (unsupported algorithm or corrupt).
    #[error("{file}: unusable private key: {reason}")]
    BadKey {
        /// The key file (or inline PEM).
        file: String,
        /// What rustls said.
        reason: String,
    },
    /// The key does not belong to the chain's first certificate.
    #[error("{key} does not match the leaf certificate in {cert}")]
    KeyMismatch {
        /// The certificate file (or inline PEM).
        cert: String,
        /// The key file (or inline PEM).
        key: String,
    },
    /// The leaf is not valid now.
    #[error("{file}: leaf certificate {what} ({when})")]
    OutsideValidity {
        /// The certificate file (or inline PEM).
        file: String,
        /// `is not yet valid` or `has expired`.
        what: &'static str,
        /// The boundary that was crossed, RFC 3339.
        when: String,
    },
}

/// A leaf certificate described for logs and the certificate inventory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertSummary {
    /// Subject distinguished name.
    pub subject: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Serial number, hex.
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// Expiry, Unix time (for the expiry gauge).
    pub not_after_unix: i64,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
}

/// Trusted CA certificates for verifying an upstream, checked to be usable trust anchors.
pub struct CaBundle {
    /// The certificates, in file order.
    pub certs: Vec<CertificateDer<'static>>,
    /// The same certificates in the form pingora's upstream connector takes.
    pub pingora: Arc<CaType>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// A client certificate and key presented to an upstream (mutual TLS).
pub struct ClientIdentity {
    /// Checked chain and key.
    pub certified: Arc<CertifiedKey>,
    /// The same, in the form pingora's upstream connector takes.
    pub pingora: Arc<CertKey>,
}

// Hand-written so that key material never reaches a log line.
impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// Parses a CA bundle: at least one certificate, each one usable as a trust anchor.
pub fn parse_ca_bundle(pem: &[u8], file: &str) -> Result<CaBundle, PemError> {
    let certs = parse_chain(pem, file)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| PemError::Malformed {
            file: file.to_owned(),
            reason: format!("certificate #{} is not a usable trust anchor: {e}", i + 1),
        })?;
    }
    // Safe to hand to pingora: every certificate parsed above with the same x509-parser version
    // pingora uses, so its panicking parse cannot fail.
    let pingora = certs
        .iter()
        .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
        .collect::<Vec<_>>();
    Ok(CaBundle {
        certs,
        pingora: pingora.into(),
    })
}

/// Builds an upstream client identity from a checked chain and key (same checks as a server
/// certificate: the key matches the leaf, the leaf is valid now).
pub fn client_identity(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &str,
    key_file: &str,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<ClientIdentity, PemError> {
    let key_der = key.secret_der().to_vec();
    let certified = certified_key(chain, key, cert_file, key_file, provider, now)?;
    let certs = certified.cert.iter().map(|c| c.to_vec()).collect();
    Ok(ClientIdentity {
        pingora: Arc::new(CertKey::new(certs, key_der)),
        certified,
    })
}

/// Parses every `CERTIFICATE` block, in order, and checks that each is X.509 DER.
pub fn parse_chain(pem: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let malformed = |reason: String| PemError::Malformed {
        file: file.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| malformed(pem_reason(&e)))?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate {
            file: file.to_owned(),
        });
    }
    for (i, der) in chain.iter().enumerate() {
        X509Certificate::from_der(der)
            .map_err(|e| malformed(format!("certificate #{} is not valid X.509: {e}", i + 1)))?;
    }
    Ok(chain)
}

/// Parses the first private key block (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8], file: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => PemError::NoKey {
            file: file.to_owned(),
        },
        other => PemError::Malformed {
            file: file.to_owned(),
            reason: pem_reason(&other),
        },
    })
}

/// The PEM parser's error as text: its own `Display` prints the marker lines it names as
/// lists of byte values.
fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line (truncated file?)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "bad BEGIN line \"{}\"",
            String::from_utf8_lossy(line).trim()
        ),
        other => other.to_string(),
    }
}

/// Builds the server identity from a chain and key: the key must sign for the leaf (the first
/// certificate, never an intermediate) and the leaf must be valid at `now`.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_file: &str,
    key_file: &str,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Arc<CertifiedKey>, PemError> {
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| PemError::BadKey {
                file: key_file.to_owned(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    if certified.keys_match().is_err() {
        return Err(PemError::KeyMismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
        });
    }
    check_validity(&certified.cert[0], cert_file, now)?;
    Ok(Arc::new(certified))
}

fn check_validity(leaf: &CertificateDer<'_>, file: &str, now: SystemTime) -> Result<(), PemError> {
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| PemError::Malformed {
        file: file.to_owned(),
        reason: e.to_string(),
    })?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(PemError::OutsideValidity {
            file: file.to_owned(),
            what: "is not yet valid",
            when: rfc3339(&validity.not_before),
        });
    }
    if now > validity.not_after.timestamp() {
        return Err(PemError::OutsideValidity {
            file: file.to_owned(),
            what: "has expired",
            when: rfc3339(&validity.not_after),
        });
    }
    Ok(())
}

/// Describes a certificate for logs. Returns `None` only for DER that `parse_chain` would refuse.
pub fn summarize(der: &CertificateDer<'_>) -> Option<CertSummary> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    GeneralName::IPAddress(ip) => ip_string(ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(CertSummary {
        subject: cert.subject().to_string(),
        sans,
        serial: cert.raw_serial_as_string().replace(':', ""),
        issuer: cert.issuer().to_string(),
        not_before: rfc3339(&cert.validity().not_before),
        not_after: rfc3339(&cert.validity().not_after),
        not_after_unix: cert.validity().not_after.timestamp(),
        sha256: sha256_hex(der),
    })
}

/// Lower-case hex SHA-256 of DER bytes: the fingerprint operators compare.
pub fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ip_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

fn rfc3339(t: &x509_parser::time::ASN1Time) -> String {
    t.to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests;
