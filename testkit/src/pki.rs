//! A throwaway PKI per test: root CA → intermediate CA → leaves, so chain handling is exercised
//! and rotated leaves are all trusted by one root.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A root and an intermediate that issue leaves, plus a first leaf for `localhost`/`127.0.0.1`.
pub struct Pki {
    /// Root CA certificate (trust anchor for clients).
    pub ca_pem: String,
    /// The first leaf's chain: leaf then intermediate, as served.
    pub chain_pem: String,
    /// The first leaf's certificate DER.
    pub leaf_der: Vec<u8>,
    /// Intermediate certificate DER.
    pub intermediate_der: Vec<u8>,
    /// The first leaf's key, PKCS#8 PEM.
    pub key_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// One issued server certificate.
pub struct Leaf {
    /// Leaf then intermediate.
    pub chain_pem: String,
    /// The leaf's key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's DER.
    pub der: Vec<u8>,
}

/// File paths of a written [`Pki`].
pub struct PkiFiles {
    /// Root CA.
    pub ca: PathBuf,
    /// Leaf + intermediate.
    pub cert: PathBuf,
    /// Leaf key.
    pub key: PathBuf,
}

impl Pki {
    /// Makes a fresh PKI whose first leaf carries `common_name` and the given SANs.
    pub fn new(common_name: &str, sans: &[&str]) -> Self {
        let root_key = KeyPair::generate().expect("root key");
        let root = CertifiedIssuer::self_signed(ca_params("smq-edge test root"), root_key)
            .expect("root cert");
        let int_key = KeyPair::generate().expect("intermediate key");
        let intermediate =
            CertifiedIssuer::signed_by(ca_params("smq-edge test intermediate"), int_key, &root)
                .expect("intermediate cert");
        let mut pki = Self {
            ca_pem: root.pem(),
            chain_pem: String::new(),
            leaf_der: Vec::new(),
            intermediate_der: intermediate.der().to_vec(),
            key_pem: String::new(),
            intermediate,
        };
        let first = pki.leaf(common_name, sans);
        pki.chain_pem = first.chain_pem;
        pki.key_pem = first.key_pem;
        pki.leaf_der = first.der;
        pki
    }

    /// A PKI for `localhost` and `127.0.0.1`.
    pub fn localhost() -> Self {
        Self::new("localhost", &["localhost", "127.0.0.1"])
    }

    /// Issues a new leaf (new key, new serial) from the intermediate.
    pub fn leaf(&self, common_name: &str, sans: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name = dn(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let leaf = params
            .signed_by(&key, &self.intermediate)
            .expect("leaf cert");
        Leaf {
            chain_pem: format!("{}{}", leaf.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            der: leaf.der().to_vec(),
        }
    }

    /// Issues a client certificate (clientAuth) for mutual TLS.
    pub fn client_leaf(&self, common_name: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name = dn(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let leaf = params
            .signed_by(&key, &self.intermediate)
            .expect("client cert");
        Leaf {
            chain_pem: format!("{}{}", leaf.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            der: leaf.der().to_vec(),
        }
    }

    /// Writes `ca.pem`, `chain.pem` and `key.pem` under `dir` with the given file name prefix.
    pub fn write(&self, dir: &Path, prefix: &str) -> PkiFiles {
        let files = PkiFiles {
            ca: dir.join(format!("{prefix}ca.pem")),
            cert: dir.join(format!("{prefix}chain.pem")),
            key: dir.join(format!("{prefix}key.pem")),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("write ca");
        std::fs::write(&files.cert, &self.chain_pem).expect("write chain");
        std::fs::write(&files.key, &self.key_pem).expect("write key");
        files
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}
