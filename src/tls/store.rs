//! Swappable TLS material: a [`Store`] holds one checked value (a server certificate and key, or
//! a CA bundle) built from one or more PEM files, behind an `ArcSwap`. Handshakes read the current
//! value without locking; the reloader calls [`Store::reload`], which builds the new value to one
//! side and publishes it only when it passed every check. On failure the last good value stays.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use super::pem::{self, CaBundle, CertSummary, ClientIdentity, PemError};
use crate::config::{PemSource, TlsFiles};

/// Builds a value from the contents of a store's sources (in the order of [`Store::sources`]),
/// given their names for error messages.
type Loader<T> = Box<dyn Fn(&[Vec<u8>], &[String]) -> Result<Arc<T>, PemError> + Send + Sync>;

/// A listener's certificate chain and key.
pub type CertStore = Store<CertifiedKey>;
/// An upstream's trusted CA certificates.
pub type CaStore = Store<CaBundle>;
/// The client certificate presented to an upstream.
pub type ClientStore = Store<ClientIdentity>;

/// What one reload attempt did.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what is already served.
    Unchanged,
    /// The files hold what is served again after a reported failure, which is now cleared.
    Restored,
    /// New material passed every check and is now served.
    Applied,
    /// The key does not match the certificate yet, within the settle window: one file of the pair
    /// has been replaced and the other is probably on its way.
    Settling,
    /// The files changed but are unusable; the last good material stays. Reported once per
    /// distinct content.
    Failed(PemError),
    /// The same unusable content as last time, already reported.
    StillFailing,
}

/// One piece of swappable material and its reload state.
pub struct Store<T> {
    /// What the material is, for logs: `listener https certificate`.
    label: String,
    /// Where it is built from.
    sources: Vec<PemSource>,
    /// The sources as named in errors.
    names: Vec<String>,
    /// Written by `reload`, read by every handshake or upstream connection.
    current: ArcSwap<T>,
    /// Bumped on every swap; upstream pools key on it so old connections are not reused.
    generation: AtomicU64,
    /// Reload bookkeeping; only the reloader takes this lock (a cold path).
    state: Mutex<ReloadState>,
    loader: Loader<T>,
}

#[derive(Default)]
struct ReloadState {
    /// When the served material was loaded: at start, then by each applied reload.
    last_applied: Option<SystemTime>,
    /// The last reload failure, until a later reload succeeds.
    last_error: Option<String>,
    /// Digest of the file contents now served.
    served: [u8; 32],
    /// Digest of the last content reported as failed.
    reported: Option<[u8; 32]>,
    /// When a key mismatch was first seen, while waiting for the pair to settle.
    mismatch_since: Option<Instant>,
}

impl<T> Store<T> {
    /// Reads the files and builds the first value; fails when they are unusable, so the proxy
    /// never starts without material.
    fn load(label: String, sources: Vec<PemSource>, loader: Loader<T>) -> Result<Self, PemError> {
        let names: Vec<String> = sources.iter().map(ToString::to_string).collect();
        let contents = read_all(&sources)?;
        let value = loader(&contents, &names)?;
        Ok(Self {
            label,
            names,
            state: Mutex::new(ReloadState {
                served: digest(&contents),
                last_applied: Some(SystemTime::now()),
                ..ReloadState::default()
            }),
            sources,
            current: ArcSwap::new(value),
            generation: AtomicU64::new(0),
            loader,
        })
    }

    /// The value new handshakes get.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// How many times the value has been replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where this store's material comes from.
    pub fn sources(&self) -> &[PemSource] {
        &self.sources
    }

    /// What the material is, for logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// When the served material was loaded (start or reload), and the last failure since then.
    pub fn reload_status(&self) -> (Option<SystemTime>, Option<String>) {
        match self.state.lock() {
            Ok(state) => (state.last_applied, state.last_error.clone()),
            Err(_) => (None, None),
        }
    }

    /// Re-reads the files and publishes new material if it changed and passes every check.
    /// A key that does not match its certificate is given `settle` to be joined by its partner
    /// before it counts as a failure.
    pub fn reload(&self, now: Instant, settle: Duration) -> Reload {
        let Ok(mut state) = self.state.lock() else {
            // A panic while holding this lock cannot leave the served value torn (it is swapped
            // whole), so the store keeps serving; the reload is refused.
            return Reload::StillFailing;
        };
        let read = read_all(&self.sources);
        let hash = match &read {
            Ok(contents) => digest(contents),
            // A missing or unreadable file is reported once per distinct reason.
            Err(e) => digest(&[e.to_string().into_bytes()]),
        };
        if read.is_ok() && hash == state.served {
            // The files hold what is served again: an earlier failure no longer applies.
            state.reported = None;
            state.mismatch_since = None;
            return match state.last_error.take() {
                Some(_) => Reload::Restored,
                None => Reload::Unchanged,
            };
        }
        let built = read.and_then(|contents| (self.loader)(&contents, &self.names));
        if let Err(PemError::KeyMismatch { .. }) = &built {
            let since = *state.mismatch_since.get_or_insert(now);
            if now.duration_since(since) < settle {
                return Reload::Settling;
            }
        }
        match built {
            Ok(value) => {
                self.current.store(value);
                self.generation.fetch_add(1, Ordering::AcqRel);
                *state = ReloadState {
                    served: hash,
                    last_applied: Some(SystemTime::now()),
                    ..ReloadState::default()
                };
                Reload::Applied
            }
            Err(_) if state.reported == Some(hash) => Reload::StillFailing,
            Err(e) => {
                state.reported = Some(hash);
                state.mismatch_since = None;
                state.last_error = Some(e.to_string());
                Reload::Failed(e)
            }
        }
    }
}

/// Material whose first certificate describes it in logs.
pub trait HasLeaf {
    /// The certificate to describe: the leaf, or a bundle's first CA.
    fn leaf(&self) -> Option<&CertificateDer<'static>>;
}

impl HasLeaf for CertifiedKey {
    fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.cert.first()
    }
}

impl HasLeaf for ClientIdentity {
    fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certified.cert.first()
    }
}

impl HasLeaf for CaBundle {
    fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certs.first()
    }
}

impl<T: HasLeaf> Store<T> {
    /// A summary of the current certificate, for logs.
    pub fn summary(&self) -> Option<CertSummary> {
        self.current.load().leaf().and_then(pem::summarize)
    }
}

/// Checks a certificate chain and its key into some identity (the signature of
/// `pem::certified_key` and `pem::client_identity`).
type BuildIdentity<T> = fn(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
    &str,
    &str,
    &CryptoProvider,
    SystemTime,
) -> Result<T, PemError>;

impl<T: Send + Sync + 'static> Store<T> {
    /// A store of a certificate chain and its key, checked by `build` on every load.
    fn load_identity(
        label: String,
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
        build: BuildIdentity<Arc<T>>,
    ) -> Result<Self, PemError> {
        let loader: Loader<T> = Box::new(move |contents, names| {
            let chain = pem::parse_chain(&contents[0], &names[0])?;
            let key = pem::parse_key(&contents[1], &names[1])?;
            build(
                chain,
                key,
                &names[0],
                &names[1],
                &provider,
                SystemTime::now(),
            )
        });
        Self::load(label, vec![files.cert.clone(), files.key.clone()], loader)
    }
}

impl CertStore {
    /// A listener identity from a certificate chain and a key.
    pub fn load_pair(
        label: String,
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, PemError> {
        Self::load_identity(label, files, provider, pem::certified_key)
    }
}

impl ClientStore {
    /// An upstream client identity from a certificate chain and a key.
    pub fn load_client(
        label: String,
        files: &TlsFiles,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, PemError> {
        Self::load_identity(
            label,
            files,
            provider,
            |chain, key, cert, key_name, provider, now| {
                pem::client_identity(chain, key, cert, key_name, provider, now).map(Arc::new)
            },
        )
    }
}

impl CaStore {
    /// A CA bundle from one PEM source.
    pub fn load_bundle(label: String, source: &PemSource) -> Result<Self, PemError> {
        let loader: Loader<CaBundle> =
            Box::new(|contents, names| pem::parse_ca_bundle(&contents[0], &names[0]).map(Arc::new));
        Self::load(label, vec![source.clone()], loader)
    }
}

fn read_all(sources: &[PemSource]) -> Result<Vec<Vec<u8>>, PemError> {
    sources
        .iter()
        .map(|source| match source {
            PemSource::File { path, .. } => std::fs::read(path).map_err(|error| PemError::Read {
                file: source.to_string(),
                error,
            }),
            PemSource::Inline { pem, .. } => Ok(pem.as_bytes().to_vec()),
        })
        .collect()
}

fn digest(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for c in contents {
        ctx.update(&(c.len() as u64).to_le_bytes());
        ctx.update(c);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

// Hand-written so that key material never reaches a log line.
impl<T> fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("label", &self.label)
            .field("sources", &self.names)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
