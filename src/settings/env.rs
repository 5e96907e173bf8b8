//! SuperMQ's `SMQ_*` settings, read through the [`Vars`] seam (the process environment in the
//! binary, a `HashMap` in tests). This file is the only place that knows the variable names.
//!
//! Names are derived from listener and upstream names: upper-cased, `-` → `_`, so listener
//! `users` answers to `SMQ_USERS_SERVER_CERT` and upstream `http-adapter` to
//! `SMQ_HTTP_ADAPTER_CA_CERTS`. An empty value counts as unset, as in SuperMQ's `.env` files.

use std::collections::HashMap;

/// Standalone mode: the single user's e-mail (with the token, both must be set).
pub const ENV_STANDALONE_EMAIL: &str = "SMQ_CLIENTS_STANDALONE_EMAIL";
/// Standalone mode: the bearer token HTTP requests to the Clients API must carry.
pub const ENV_STANDALONE_TOKEN: &str = "SMQ_CLIENTS_STANDALONE_TOKEN";

/// Listener certificate (`SMQ_<NAME>_SERVER_CERT`).
pub const SERVER_CERT: &str = "SERVER_CERT";
/// Listener key (`SMQ_<NAME>_SERVER_KEY`).
pub const SERVER_KEY: &str = "SERVER_KEY";
/// Alias used by newer SuperMQ releases for the HTTP server certificate.
pub const HTTP_SERVER_CERT: &str = "HTTP_SERVER_CERT";
/// Alias used by newer SuperMQ releases for the HTTP server key.
pub const HTTP_SERVER_KEY: &str = "HTTP_SERVER_KEY";
/// Alias used by newer SuperMQ releases for the gRPC server certificate.
pub const GRPC_SERVER_CERT: &str = "GRPC_SERVER_CERT";
/// Alias used by newer SuperMQ releases for the gRPC server key.
pub const GRPC_SERVER_KEY: &str = "GRPC_SERVER_KEY";
/// Upstream CA bundle (`SMQ_<NAME>_CA_CERTS`): set → TLS with `verify-full`.
pub const CA_CERTS: &str = "CA_CERTS";
/// Alias for the upstream CA bundle used by newer SuperMQ releases.
pub const GRPC_SERVER_CA_CERTS: &str = "GRPC_SERVER_CA_CERTS";
/// Upstream client certificate for mutual TLS.
pub const GRPC_CLIENT_CERT: &str = "GRPC_CLIENT_CERT";
/// Upstream client key for mutual TLS.
pub const GRPC_CLIENT_KEY: &str = "GRPC_CLIENT_KEY";
/// Upstream TLS mode (`disable`, `require`, `verify-ca`, `verify-full`).
pub const TLS_MODE: &str = "TLS_MODE";

/// Where settings are read from.
pub trait Vars {
    /// The value of `name`, or `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).filter(|v| !v.is_empty()).cloned()
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl Vars for NoVars {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// `SMQ_<NAME>_<SUFFIX>` for a listener or upstream name.
pub fn var_name(name: &str, suffix: &str) -> String {
    format!(
        "SMQ_{}_{suffix}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// A variable that is set, with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The variable's name.
    pub var: String,
    /// Its value.
    pub value: String,
}

fn found(vars: &dyn Vars, var: String) -> Option<Found> {
    vars.get(&var).map(|value| Found { var, value })
}

/// What the environment says about a listener's certificate and key.
#[derive(Debug, PartialEq, Eq)]
pub enum ListenerTlsEnv {
    /// Nothing set; these are the variables that would enable TLS.
    Unset {
        /// Certificate variable.
        cert: String,
        /// Key variable.
        key: String,
    },
    /// One family has both set.
    Pair {
        /// Certificate.
        cert: Found,
        /// Key.
        key: Found,
        /// Set variables of lower-precedence families, ignored.
        ignored: Vec<String>,
    },
    /// Only one of a family's two variables is set.
    Half {
        /// The one set.
        set: Found,
        /// The name of the missing one.
        missing: String,
        /// Which of the two is set.
        is_cert: bool,
        /// Set variables of lower-precedence families, ignored.
        ignored: Vec<String>,
    },
}

/// The certificate/key variable pairs a listener answers to, highest precedence first:
/// `SERVER_*`, then the `HTTP_SERVER_*` alias, then the `GRPC_SERVER_*` alias unless a
/// `<name>-grpc` listener exists (which then takes `SMQ_<NAME>_GRPC_SERVER_*` by the general rule).
pub fn listener_families(listener: &str, has_grpc_sibling: bool) -> Vec<(String, String)> {
    let mut families = vec![
        (
            var_name(listener, SERVER_CERT),
            var_name(listener, SERVER_KEY),
        ),
        (
            var_name(listener, HTTP_SERVER_CERT),
            var_name(listener, HTTP_SERVER_KEY),
        ),
    ];
    if !has_grpc_sibling {
        families.push((
            var_name(listener, GRPC_SERVER_CERT),
            var_name(listener, GRPC_SERVER_KEY),
        ));
    }
    families
}

/// Reads a listener's certificate and key variables.
pub fn listener_tls(vars: &dyn Vars, listener: &str, has_grpc_sibling: bool) -> ListenerTlsEnv {
    let families = listener_families(listener, has_grpc_sibling);
    let mut chosen: Option<ListenerTlsEnv> = None;
    let mut ignored = Vec::new();
    for (cert_var, key_var) in &families {
        let cert = found(vars, cert_var.clone());
        let key = found(vars, key_var.clone());
        if chosen.is_some() {
            ignored.extend(cert.into_iter().chain(key).map(|f| f.var));
            continue;
        }
        chosen = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ListenerTlsEnv::Pair {
                cert,
                key,
                ignored: Vec::new(),
            }),
            (Some(set), None) => Some(ListenerTlsEnv::Half {
                set,
                missing: key_var.clone(),
                is_cert: true,
                ignored: Vec::new(),
            }),
            (None, Some(set)) => Some(ListenerTlsEnv::Half {
                set,
                missing: cert_var.clone(),
                is_cert: false,
                ignored: Vec::new(),
            }),
        };
    }
    match chosen {
        None => ListenerTlsEnv::Unset {
            cert: families[0].0.clone(),
            key: families[0].1.clone(),
        },
        Some(ListenerTlsEnv::Pair { cert, key, .. }) => ListenerTlsEnv::Pair { cert, key, ignored },
        Some(ListenerTlsEnv::Half {
            set,
            missing,
            is_cert,
            ..
        }) => ListenerTlsEnv::Half {
            set,
            missing,
            is_cert,
            ignored,
        },
        Some(unset) => unset,
    }
}

/// What the environment says about an upstream's TLS.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamTlsEnv {
    /// CA bundle: `SMQ_<NAME>_CA_CERTS`, else `SMQ_<NAME>_GRPC_SERVER_CA_CERTS`.
    pub ca: Option<Found>,
    /// `SMQ_<NAME>_CA_CERTS` and the alias both set: the alias is ignored.
    pub ignored_ca: Option<String>,
    /// `SMQ_<NAME>_TLS_MODE`.
    pub mode: Option<Found>,
    /// `SMQ_<NAME>_GRPC_CLIENT_CERT`.
    pub client_cert: Option<Found>,
    /// `SMQ_<NAME>_GRPC_CLIENT_KEY`.
    pub client_key: Option<Found>,
}

/// Reads an upstream's TLS variables.
pub fn upstream_tls(vars: &dyn Vars, upstream: &str) -> UpstreamTlsEnv {
    let primary = found(vars, var_name(upstream, CA_CERTS));
    let alias = found(vars, var_name(upstream, GRPC_SERVER_CA_CERTS));
    let (ca, ignored_ca) = match (primary, alias) {
        (Some(p), Some(a)) => (Some(p), Some(a.var)),
        (p, a) => (p.or(a), None),
    };
    UpstreamTlsEnv {
        ca,
        ignored_ca,
        mode: found(vars, var_name(upstream, TLS_MODE)),
        client_cert: found(vars, var_name(upstream, GRPC_CLIENT_CERT)),
        client_key: found(vars, var_name(upstream, GRPC_CLIENT_KEY)),
    }
}

/// Standalone mode's settings.
#[derive(Debug, PartialEq, Eq)]
pub enum StandaloneEnv {
    /// Neither variable set: normal mode.
    Off,
    /// Both set.
    On {
        /// The user's e-mail.
        email: String,
        /// The bearer token.
        token: String,
    },
    /// Only one set: the name of the missing one.
    Half {
        /// The variable that is missing.
        missing: &'static str,
    },
}

/// Reads the standalone-mode variables.
pub fn standalone(vars: &dyn Vars) -> StandaloneEnv {
    match (
        vars.get(ENV_STANDALONE_EMAIL),
        vars.get(ENV_STANDALONE_TOKEN),
    ) {
        (None, None) => StandaloneEnv::Off,
        (Some(email), Some(token)) => StandaloneEnv::On { email, token },
        (Some(_), None) => StandaloneEnv::Half {
            missing: ENV_STANDALONE_TOKEN,
        },
        (None, Some(_)) => StandaloneEnv::Half {
            missing: ENV_STANDALONE_EMAIL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn names_are_upper_cased_with_underscores() {
        assert_eq!(
            var_name("http-adapter", CA_CERTS),
            "SMQ_HTTP_ADAPTER_CA_CERTS"
        );
        assert_eq!(var_name("users", SERVER_CERT), "SMQ_USERS_SERVER_CERT");
    }

    #[test]
    fn unset_names_the_variables_to_set() {
        assert_eq!(
            listener_tls(&vars(&[]), "users", false),
            ListenerTlsEnv::Unset {
                cert: "SMQ_USERS_SERVER_CERT".into(),
                key: "SMQ_USERS_SERVER_KEY".into()
            }
        );
    }

    #[test]
    fn empty_counts_as_unset() {
        let v = vars(&[("SMQ_USERS_SERVER_CERT", ""), ("SMQ_USERS_SERVER_KEY", "")]);
        assert!(matches!(
            listener_tls(&v, "users", false),
            ListenerTlsEnv::Unset { .. }
        ));
    }

    #[test]
    fn half_set_names_the_missing_variable() {
        let v = vars(&[("SMQ_USERS_SERVER_CERT", "/c.pem")]);
        match listener_tls(&v, "users", false) {
            ListenerTlsEnv::Half {
                missing, is_cert, ..
            } => {
                assert_eq!(missing, "SMQ_USERS_SERVER_KEY");
                assert!(is_cert);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn primary_names_win_over_aliases_and_aliases_are_reported_ignored() {
        let v = vars(&[
            ("SMQ_USERS_SERVER_CERT", "/a.pem"),
            ("SMQ_USERS_SERVER_KEY", "/a.key"),
            ("SMQ_USERS_GRPC_SERVER_CERT", "/g.pem"),
            ("SMQ_USERS_GRPC_SERVER_KEY", "/g.key"),
        ]);
        match listener_tls(&v, "users", false) {
            ListenerTlsEnv::Pair { cert, ignored, .. } => {
                assert_eq!(cert.var, "SMQ_USERS_SERVER_CERT");
                assert_eq!(
                    ignored,
                    vec!["SMQ_USERS_GRPC_SERVER_CERT", "SMQ_USERS_GRPC_SERVER_KEY"]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grpc_alias_goes_to_the_grpc_listener_when_there_is_one() {
        let v = vars(&[
            ("SMQ_USERS_GRPC_SERVER_CERT", "/g.pem"),
            ("SMQ_USERS_GRPC_SERVER_KEY", "/g.key"),
        ]);
        assert!(matches!(
            listener_tls(&v, "users", true),
            ListenerTlsEnv::Unset { .. }
        ));
        assert!(matches!(
            listener_tls(&v, "users-grpc", false),
            ListenerTlsEnv::Pair { .. }
        ));
        assert!(matches!(
            listener_tls(&v, "users", false),
            ListenerTlsEnv::Pair { .. }
        ));
        let v = vars(&[
            ("SMQ_USERS_HTTP_SERVER_CERT", "/h.pem"),
            ("SMQ_USERS_HTTP_SERVER_KEY", "/h.key"),
        ]);
        assert!(matches!(
            listener_tls(&v, "users", true),
            ListenerTlsEnv::Pair { .. }
        ));
    }

    #[test]
    fn upstream_ca_alias_is_used_only_without_the_primary() {
        let v = vars(&[("SMQ_CLIENTS_GRPC_SERVER_CA_CERTS", "/alias.pem")]);
        assert_eq!(
            upstream_tls(&v, "clients").ca.unwrap().var,
            "SMQ_CLIENTS_GRPC_SERVER_CA_CERTS"
        );
        let v = vars(&[
            ("SMQ_CLIENTS_CA_CERTS", "/ca.pem"),
            ("SMQ_CLIENTS_GRPC_SERVER_CA_CERTS", "/alias.pem"),
        ]);
        let env = upstream_tls(&v, "clients");
        assert_eq!(env.ca.unwrap().value, "/ca.pem");
        assert_eq!(
            env.ignored_ca.as_deref(),
            Some("SMQ_CLIENTS_GRPC_SERVER_CA_CERTS")
        );
    }

    #[test]
    fn standalone_needs_both_variables() {
        assert_eq!(standalone(&vars(&[])), StandaloneEnv::Off);
        assert_eq!(
            standalone(&vars(&[(ENV_STANDALONE_TOKEN, "t")])),
            StandaloneEnv::Half {
                missing: ENV_STANDALONE_EMAIL
            }
        );
        assert!(matches!(
            standalone(&vars(&[
                (ENV_STANDALONE_TOKEN, "t"),
                (ENV_STANDALONE_EMAIL, "a@b")
            ])),
            StandaloneEnv::On { .. }
        ));
    }
}
