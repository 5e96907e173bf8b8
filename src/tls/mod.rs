//! TLS material: PEM parsing and checks ([`pem`]), swappable stores ([`store`]), the rustls
//! resolver that serves them ([`resolver`]) and development certificates ([`dev_certs`]).

pub mod dev_certs;
pub mod material;
pub mod pem;
pub mod reloader;
pub mod resolver;
pub mod store;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider used everywhere: ring, which pingora's rustls build also uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
