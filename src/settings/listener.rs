//! `[[listeners]]` → `Listener`: address, protocol, TLS (see `tls`) and routes.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::{Listener, ListenerProtocol, Origin, PathPrefix, Route};

use super::file::{ListenerSection, RouteSection};
use super::{Build, DEFAULT_TCP_IDLE_TIMEOUT, duration, invalid, tls};

/// A tcp listener forwards every byte to one upstream: one route, naming only the upstream.
fn check_tcp_routes(
    b: &mut Build<'_>,
    key: &str,
    l: &ListenerSection,
    upstreams: &HashMap<String, (usize, bool)>,
) {
    if l.routes.len() > 1 {
        b.errs.push(invalid(
            format!("{key}.routes"),
            "a tcp listener has exactly one route: all its bytes go to one upstream",
        ));
    }
    for (i, r) in l.routes.iter().enumerate() {
        if r.host.is_some() || r.path_prefix.is_some() || r.strip_prefix {
            b.errs.push(invalid(
                format!("{key}.routes[{i}]"),
                "a tcp listener's route holds only `upstream` (no host, path_prefix or strip_prefix)",
            ));
        }
        if upstreams.get(&r.upstream).is_some_and(|(_, tcp)| !tcp) {
            b.errs.push(invalid(
                format!("{key}.routes[{i}].upstream"),
                format!("upstream {:?} is not protocol = \"tcp\"", r.upstream),
            ));
        }
    }
}

pub(super) fn build(
    b: &mut Build<'_>,
    key: &str,
    l: &ListenerSection,
    upstreams: &HashMap<String, (usize, bool)>,
    has_grpc_sibling: bool,
) -> Option<Listener> {
    let start = b.errs.len();
    if l.name.is_empty() {
        b.errs
            .push(invalid(format!("{key}.name"), "must not be empty"));
    }
    let listen = match l.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            b.errs.push(invalid(
                format!("{key}.listen"),
                format!("{:?} is not an IP:port socket address", l.listen),
            ));
            None
        }
    };
    let protocol = match l.protocol.as_deref() {
        None | Some("http") => ListenerProtocol::Http,
        Some("tcp") => ListenerProtocol::Tcp {
            idle_timeout: duration(
                &mut b.errs,
                &format!("{key}.idle_timeout"),
                l.idle_timeout.as_deref(),
            )
            .unwrap_or(DEFAULT_TCP_IDLE_TIMEOUT),
        },
        Some(other) => {
            b.errs.push(invalid(
                format!("{key}.protocol"),
                format!("unknown protocol {other:?}; expected \"http\" or \"tcp\""),
            ));
            ListenerProtocol::Http
        }
    };
    if l.idle_timeout.is_some() && protocol == ListenerProtocol::Http {
        b.errs.push(invalid(
            format!("{key}.idle_timeout"),
            "only tcp listeners have an idle timeout; HTTP uses the upstream timeouts",
        ));
    }
    if let ListenerProtocol::Tcp { idle_timeout } = protocol {
        check_tcp_routes(b, key, l, upstreams);
        b.record_or_default(
            &format!("{key}.idle_timeout"),
            l.idle_timeout.is_some(),
            humantime::format_duration(idle_timeout),
        );
    }
    b.record(format!("{key}.listen"), &l.listen, Origin::File);
    let tls = tls::listener(b, key, l, has_grpc_sibling);
    if l.routes.is_empty() {
        b.errs.push(invalid(
            format!("{key}.routes"),
            "at least one [[listeners.routes]] entry is needed",
        ));
    }
    let routes: Vec<Route> = l
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            build_route(
                b,
                &format!("{key}.routes[{i}]"),
                r,
                upstreams,
                protocol == ListenerProtocol::Http,
            )
        })
        .collect();
    if b.errs.len() > start {
        return None;
    }
    Some(Listener {
        protocol,
        name: l.name.clone(),
        listen: listen?,
        tls,
        routes,
    })
}

fn build_route(
    b: &mut Build<'_>,
    key: &str,
    r: &RouteSection,
    upstreams: &HashMap<String, (usize, bool)>,
    http: bool,
) -> Option<Route> {
    let Some(&(upstream, is_tcp)) = upstreams.get(&r.upstream) else {
        b.errs.push(invalid(
            format!("{key}.upstream"),
            format!(
                "unknown upstream {:?}; define it in an [[upstreams]] entry",
                r.upstream
            ),
        ));
        return None;
    };
    if http && is_tcp {
        b.errs.push(invalid(
            format!("{key}.upstream"),
            format!(
                "upstream {:?} is protocol = \"tcp\"; only tcp listeners can use it",
                r.upstream
            ),
        ));
        return None;
    }
    let path_prefix = match r.path_prefix.as_deref().map(PathPrefix::parse) {
        Some(Err(message)) => {
            b.errs.push(invalid(format!("{key}.path_prefix"), message));
            return None;
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if r.strip_prefix && path_prefix.is_none() {
        b.errs.push(invalid(
            format!("{key}.strip_prefix"),
            "needs a path_prefix to strip",
        ));
        return None;
    }
    Some(Route {
        host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
        path_prefix,
        strip_prefix: r.strip_prefix,
        upstream,
    })
}
