//! TLS settings of listeners and upstreams: `[listeners.tls]` and `[upstreams.tls]`, overridden
//! by SuperMQ's `SMQ_*` variables (env > file > default). Each decision that leaves traffic
//! unencrypted or ignores a variable becomes a notice the operator sees at start.

use crate::config::{Origin, PemSource, TlsFiles, TlsMode, UpstreamTls};

use super::env::{self, Found, ListenerTlsEnv};
use super::file::{ListenerSection, UpstreamSection};
use super::{Build, invalid};

/// How a PEM source is shown by `check --print`: its path, never inline PEM text.
fn shown(source: &PemSource) -> String {
    match source {
        PemSource::File { path, .. } => path.display().to_string(),
        PemSource::Inline { .. } => "<inline PEM>".to_owned(),
    }
}

fn from_env(found: &Found) -> (PemSource, Origin) {
    (
        PemSource::from_setting(&found.value, &found.var, Some(&found.var)),
        Origin::Env(found.var.clone()),
    )
}

fn from_file(value: &str, key: &str) -> (PemSource, Origin) {
    (PemSource::from_setting(value, key, None), Origin::File)
}

fn warn_ignored(b: &mut Build<'_>, what: &str, ignored: &[String], winner: &str) {
    for var in ignored {
        b.notice(
            true,
            format!("{what}: {var} is ignored: {winner} takes precedence"),
        );
    }
}

/// A listener's certificate and key: `SMQ_<NAME>_SERVER_CERT`/`_KEY` (or an alias) over
/// `[listeners.tls]`. `None` means plaintext, which is always announced as a warning.
pub(super) fn listener(
    b: &mut Build<'_>,
    key: &str,
    l: &ListenerSection,
    has_grpc_sibling: bool,
) -> Option<TlsFiles> {
    let what = format!("listener {}", l.name);
    let file = l.tls.as_ref();
    let (cert, pkey) = match env::listener_tls(b.vars, &l.name, has_grpc_sibling) {
        ListenerTlsEnv::Unset { cert, key: key_var } => match file {
            Some(t) => (
                from_file(&t.cert, &format!("{key}.tls.cert")),
                from_file(&t.key, &format!("{key}.tls.key")),
            ),
            None => {
                b.notice(
                    true,
                    format!("{what} is NOT encrypted: {cert} and {key_var} are unset and there is no [listeners.tls]"),
                );
                return None;
            }
        },
        ListenerTlsEnv::Pair {
            cert,
            key: k,
            ignored,
        } => {
            warn_ignored(b, &what, &ignored, &cert.var);
            (from_env(&cert), from_env(&k))
        }
        ListenerTlsEnv::Half {
            set,
            missing,
            is_cert,
            ignored,
        } => {
            warn_ignored(b, &what, &ignored, &set.var);
            let Some(t) = file else {
                b.notice(
                    true,
                    format!(
                        "{what} is NOT encrypted: {} is set but {missing} is not",
                        set.var
                    ),
                );
                return None;
            };
            b.notice(
                false,
                format!("{what}: {} overrides [listeners.tls]; {missing} is unset, so the file's other half is used", set.var),
            );
            if is_cert {
                (from_env(&set), from_file(&t.key, &format!("{key}.tls.key")))
            } else {
                (
                    from_file(&t.cert, &format!("{key}.tls.cert")),
                    from_env(&set),
                )
            }
        }
    };
    b.record(format!("{key}.tls.cert"), shown(&cert.0), cert.1);
    b.record(format!("{key}.tls.key"), shown(&pkey.0), pkey.1);
    Some(TlsFiles {
        cert: cert.0,
        key: pkey.0,
    })
}

/// Parses a TLS mode as SuperMQ (libpq) spells it. `None` means `disable`.
fn parse_tls_mode(raw: &str) -> Result<Option<TlsMode>, String> {
    match raw {
        "disable" | "disabled" => Ok(None),
        "require" | "required" => Ok(Some(TlsMode::Require)),
        "verify-ca" => Ok(Some(TlsMode::VerifyCa)),
        "verify-full" => Ok(Some(TlsMode::VerifyFull)),
        other => Err(format!(
            "unknown TLS mode {other:?}; expected \"disable\", \"require\", \"verify-ca\" or \"verify-full\""
        )),
    }
}

fn mode_name(mode: Option<TlsMode>) -> &'static str {
    match mode {
        None => "disable",
        Some(TlsMode::Require) => "require",
        Some(TlsMode::VerifyCa) => "verify-ca",
        Some(TlsMode::VerifyFull) => "verify-full",
    }
}

/// An upstream's TLS: `SMQ_<NAME>_CA_CERTS` (or its alias) turns on `verify-full`,
/// `SMQ_<NAME>_TLS_MODE` sets the mode, `SMQ_<NAME>_GRPC_CLIENT_CERT`/`_KEY` the client
/// certificate; each over `[upstreams.tls]`. `None` means plaintext.
pub(super) fn upstream(b: &mut Build<'_>, key: &str, u: &UpstreamSection) -> Option<UpstreamTls> {
    let what = format!("upstream {}", u.name);
    let e = env::upstream_tls(b.vars, &u.name);
    if let (Some(ignored), Some(ca)) = (&e.ignored_ca, &e.ca) {
        warn_ignored(b, &what, std::slice::from_ref(ignored), &ca.var);
    }
    let file = u.tls.as_ref();
    let (mode_raw, mode_origin, mode_field) = match (&e.mode, file.and_then(|t| t.mode.as_deref()))
    {
        (Some(m), _) => (
            Some(m.value.clone()),
            Origin::Env(m.var.clone()),
            m.var.clone(),
        ),
        (None, Some(m)) => (Some(m.to_owned()), Origin::File, format!("{key}.tls.mode")),
        (None, None) => (None, Origin::Default, format!("{key}.tls.mode")),
    };
    let ca = match (&e.ca, file.and_then(|t| t.ca.as_deref())) {
        (Some(found), _) => Some(from_env(found)),
        (None, Some(path)) => Some(from_file(path, &format!("{key}.tls.ca"))),
        (None, None) => None,
    };
    if mode_raw.is_none() && ca.is_none() && file.is_none() {
        b.record(format!("{key}.tls.mode"), "disable", Origin::Default);
        return None;
    }
    let mode = match mode_raw.as_deref().map(parse_tls_mode) {
        Some(Err(message)) => {
            b.errs.push(invalid(mode_field, message));
            return None;
        }
        Some(Ok(mode)) => mode,
        // A CA bundle or a [upstreams.tls] table without a mode means full verification.
        None => Some(TlsMode::VerifyFull),
    };
    b.record(format!("{key}.tls.mode"), mode_name(mode), mode_origin);
    let mode = mode?;
    if mode != TlsMode::Require && ca.is_none() {
        b.errs.push(invalid(
            format!("{key}.tls.ca"),
            format!(
                "{} needs a CA bundle to verify against: set {} or [upstreams.tls] ca",
                mode_name(Some(mode)),
                env::var_name(&u.name, env::CA_CERTS)
            ),
        ));
        return None;
    }
    if let Some((source, origin)) = &ca {
        b.record(format!("{key}.tls.ca"), shown(source), origin.clone());
    }
    let client = client_identity(b, key, u, &e)?;
    let sni = match file.and_then(|t| t.sni.as_deref()) {
        Some("") => {
            // An empty SNI makes pingora skip certificate verification entirely.
            b.errs
                .push(invalid(format!("{key}.tls.sni"), "must not be empty"));
            return None;
        }
        Some(sni) => {
            b.record(format!("{key}.tls.sni"), sni, Origin::File);
            sni.to_owned()
        }
        None => {
            let host = host_of(&u.address).to_owned();
            b.record(format!("{key}.tls.sni"), &host, Origin::Default);
            host
        }
    };
    Some(UpstreamTls {
        mode,
        ca: ca.map(|(source, _)| source),
        sni,
        client,
    })
}

/// The client certificate for mutual TLS. The outer `None` means an error was recorded.
fn client_identity(
    b: &mut Build<'_>,
    key: &str,
    u: &UpstreamSection,
    e: &env::UpstreamTlsEnv,
) -> Option<Option<TlsFiles>> {
    let file = u.tls.as_ref();
    let (cert, pkey) = match (&e.client_cert, &e.client_key) {
        (Some(c), Some(k)) => (from_env(c), from_env(k)),
        (Some(set), None) | (None, Some(set)) => {
            let missing = if e.client_cert.is_some() {
                env::var_name(&u.name, env::GRPC_CLIENT_KEY)
            } else {
                env::var_name(&u.name, env::GRPC_CLIENT_CERT)
            };
            b.errs.push(invalid(
                missing.clone(),
                format!(
                    "{} is set but {missing} is not: a client certificate needs both",
                    set.var
                ),
            ));
            return None;
        }
        (None, None) => match file.map(|t| (&t.cert, &t.key)) {
            Some((Some(c), Some(k))) => (
                from_file(c, &format!("{key}.tls.cert")),
                from_file(k, &format!("{key}.tls.key")),
            ),
            Some((Some(_), None)) => {
                b.errs.push(invalid(
                    format!("{key}.tls.key"),
                    "a client cert needs its key",
                ));
                return None;
            }
            Some((None, Some(_))) => {
                b.errs.push(invalid(
                    format!("{key}.tls.cert"),
                    "a client key needs its cert",
                ));
                return None;
            }
            Some((None, None)) | None => return Some(None),
        },
    };
    b.record(format!("{key}.tls.cert"), shown(&cert.0), cert.1);
    b.record(format!("{key}.tls.key"), shown(&pkey.0), pkey.1);
    Some(Some(TlsFiles {
        cert: cert.0,
        key: pkey.0,
    }))
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}
