//! Config → every TLS store the proxy serves from: listener certificates, upstream CA bundles and
//! upstream client certificates. Files shared by several listeners or upstreams get one store, so
//! one reload updates them all. Every unusable file is reported, not only the first.

use std::collections::HashMap;
use std::sync::Arc;

use super::reloader::Reloadable;
use super::store::{CaStore, CertStore, ClientStore};
use crate::config::{Config, PemSource, TlsFiles};
use crate::upstream::UpstreamRuntime;

/// All TLS material, loaded and checked.
pub struct Material {
    /// Listener certificates, by their files.
    pub listeners: HashMap<TlsFiles, Arc<CertStore>>,
    /// Upstreams with the stores their TLS reads.
    pub upstreams: Arc<Vec<Arc<UpstreamRuntime>>>,
    /// Every store, for the reloader.
    pub reloadable: Vec<Arc<dyn Reloadable>>,
    /// Every store with the listeners and upstreams that use it, for the inventory.
    pub inventory: Vec<(Arc<dyn Reloadable>, Vec<String>)>,
}

impl Material {
    /// Loads every store `config` names. On failure, returns one line per problem, each naming
    /// the listener or upstream and the file.
    pub fn load(config: &Config) -> Result<Self, Vec<String>> {
        let provider = super::provider();
        let mut problems = Vec::new();
        let mut reloadable: Vec<Arc<dyn Reloadable>> = Vec::new();

        let mut listeners = HashMap::new();
        for l in &config.listeners {
            let Some(files) = &l.tls else { continue };
            if listeners.contains_key(files) {
                continue;
            }
            let label = format!("listener {} certificate", l.name);
            match CertStore::load_pair(label, files, provider.clone()) {
                Ok(store) => {
                    let store = Arc::new(store);
                    reloadable.push(store.clone());
                    listeners.insert(files.clone(), store);
                }
                Err(e) => problems.push(format!("listener {}: {e}", l.name)),
            }
        }

        let mut cas: HashMap<PemSource, Arc<CaStore>> = HashMap::new();
        let mut clients: HashMap<TlsFiles, Arc<ClientStore>> = HashMap::new();
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            let tls = u.tls.as_ref();
            let ca = match tls.and_then(|t| t.ca.as_ref()) {
                Some(path) => match cas.get(path) {
                    Some(store) => Some(store.clone()),
                    None => {
                        match CaStore::load_bundle(format!("upstream {} CA bundle", u.name), path) {
                            Ok(store) => {
                                let store = Arc::new(store);
                                reloadable.push(store.clone());
                                cas.insert(path.clone(), store.clone());
                                Some(store)
                            }
                            Err(e) => {
                                problems.push(format!("upstream {}: {e}", u.name));
                                None
                            }
                        }
                    }
                },
                None => None,
            };
            let client = match tls.and_then(|t| t.client.as_ref()) {
                Some(files) => match clients.get(files) {
                    Some(store) => Some(store.clone()),
                    None => {
                        let label = format!("upstream {} client certificate", u.name);
                        match ClientStore::load_client(label, files, provider.clone()) {
                            Ok(store) => {
                                let store = Arc::new(store);
                                reloadable.push(store.clone());
                                clients.insert(files.clone(), store.clone());
                                Some(store)
                            }
                            Err(e) => {
                                problems.push(format!("upstream {}: {e}", u.name));
                                None
                            }
                        }
                    }
                },
                None => None,
            };
            match UpstreamRuntime::new(u.clone(), ca, client) {
                Ok(runtime) => upstreams.push(Arc::new(runtime)),
                Err(e) => problems.push(format!("upstream {}: {e}", u.name)),
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let inventory = inventory(config, &listeners, &cas, &clients, &reloadable);
        Ok(Self {
            listeners,
            upstreams: Arc::new(upstreams),
            reloadable,
            inventory,
        })
    }
}

/// Pairs each store with the listeners and upstreams that read it.
fn inventory(
    config: &Config,
    listeners: &HashMap<TlsFiles, Arc<CertStore>>,
    cas: &HashMap<PemSource, Arc<CaStore>>,
    clients: &HashMap<TlsFiles, Arc<ClientStore>>,
    stores: &[Arc<dyn Reloadable>],
) -> Vec<(Arc<dyn Reloadable>, Vec<String>)> {
    let mut users: Vec<Vec<String>> = vec![Vec::new(); stores.len()];
    let mut add = |label: &str, user: String| {
        if let Some(i) = stores.iter().position(|s| s.label() == label) {
            users[i].push(user);
        }
    };
    for l in &config.listeners {
        if let Some(store) = l.tls.as_ref().and_then(|f| listeners.get(f)) {
            add(store.label(), format!("listener {}", l.name));
        }
    }
    for u in &config.upstreams {
        let tls = u.tls.as_ref();
        if let Some(store) = tls.and_then(|t| t.ca.as_ref()).and_then(|c| cas.get(c)) {
            add(store.label(), format!("upstream {}", u.name));
        }
        if let Some(store) = tls
            .and_then(|t| t.client.as_ref())
            .and_then(|c| clients.get(c))
        {
            add(store.label(), format!("upstream {}", u.name));
        }
    }
    stores.iter().cloned().zip(users).collect()
}
