//! Standalone mode (`SMQ_CLIENTS_STANDALONE_EMAIL` + `SMQ_CLIENTS_STANDALONE_TOKEN`): Clients runs
//! with one user and no Users or Auth service, so the proxy keeps only the routes to Clients
//! upstreams (named `clients` or `clients-*`), drops the rest, and guards them with the token.

use crate::config::{BearerToken, Origin, Standalone};

use super::env::{self, StandaloneEnv};
use super::file::FileConfig;
use super::{Build, invalid};

/// Whether an upstream belongs to the Clients service.
pub(super) fn is_clients(upstream: &str) -> bool {
    upstream == "clients" || upstream.starts_with("clients-")
}

/// Applies standalone mode to the file's settings when both variables are set.
pub(super) fn apply(b: &mut Build<'_>, file: &mut FileConfig) -> Option<Standalone> {
    let (email, token) = match env::standalone(b.vars) {
        StandaloneEnv::Off => return None,
        StandaloneEnv::Half { missing } => {
            // Running without the token the operator meant to require would expose Clients.
            b.errs.push(invalid(
                missing,
                format!(
                    "standalone mode needs both {} and {}",
                    env::ENV_STANDALONE_EMAIL,
                    env::ENV_STANDALONE_TOKEN
                ),
            ));
            return None;
        }
        StandaloneEnv::On { email, token } => (email, token),
    };
    let mut dropped_listeners = Vec::new();
    for l in &mut file.listeners {
        l.routes.retain(|r| is_clients(&r.upstream));
        if l.routes.is_empty() {
            dropped_listeners.push(l.name.clone());
        }
    }
    file.listeners.retain(|l| !l.routes.is_empty());
    let dropped_upstreams: Vec<String> = file
        .upstreams
        .iter()
        .filter(|u| !is_clients(&u.name))
        .map(|u| u.name.clone())
        .collect();
    file.upstreams.retain(|u| is_clients(&u.name));
    b.notice(
        false,
        format!(
            "standalone mode for {email}: only Clients routes are active, behind {}; dropped listeners {dropped_listeners:?} and upstreams {dropped_upstreams:?}",
            env::ENV_STANDALONE_TOKEN
        ),
    );
    b.record(
        "standalone.email",
        &email,
        Origin::Env(env::ENV_STANDALONE_EMAIL.into()),
    );
    b.record(
        "standalone.token",
        "<redacted>",
        Origin::Env(env::ENV_STANDALONE_TOKEN.into()),
    );
    Some(Standalone {
        email,
        token: BearerToken::new(&token),
    })
}
