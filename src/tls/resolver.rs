//! rustls certificate resolver over a [`CertStore`]: every handshake, with or without SNI, gets the
//! listener's current certificate. Reading through the store is what makes rotation restart-free.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::store::CertStore;

/// Serves one store's current certificate to every client of a listener.
#[derive(Debug)]
pub struct StoreResolver {
    store: Arc<CertStore>,
}

impl StoreResolver {
    /// Resolves from `store`.
    pub fn new(store: Arc<CertStore>) -> Self {
        Self { store }
    }
}

impl ResolvesServerCert for StoreResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current())
    }
}
