//! Server certificate stores: the checked certificate and key of one listener identity, held in an
//! `ArcSwap` so a later reload can publish new material atomically while handshakes read the
//! current one without locking. Readers only ever see a whole, checked pair.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use super::pem::{self, PemError};
use crate::config::TlsFiles;

/// The current certificate and key for the listeners that use one pair of files.
pub struct CertStore {
    /// Where the material comes from.
    files: TlsFiles,
    /// Written by `load` (and by the reloader); read by the resolver on every handshake.
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// Reads and checks the files; fails without a store when they are unusable, so the proxy
    /// never starts without a certificate.
    pub fn load(files: TlsFiles, provider: &CryptoProvider) -> Result<Self, PemError> {
        let key = pem::load_pair(&files.cert, &files.key, provider, SystemTime::now())?;
        Ok(Self {
            files,
            current: ArcSwap::new(key),
        })
    }

    /// The material new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// The files this store reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A summary of the current leaf, for logs.
    pub fn summary(&self) -> Option<pem::CertSummary> {
        self.current.load().cert.first().and_then(pem::summarize)
    }
}

// Hand-written so that key material never reaches a log line.
impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.files.cert)
            .field("key", &self.files.key)
            .finish_non_exhaustive()
    }
}
