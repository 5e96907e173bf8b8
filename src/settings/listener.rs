//! `[[listeners]]` → `Listener`: address, protocol, TLS (see `tls`) and routes.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::{Listener, Origin, PathPrefix, Route};

use super::file::{ListenerSection, RouteSection};
use super::{Build, invalid, tls};

pub(super) fn build(
    b: &mut Build<'_>,
    key: &str,
    l: &ListenerSection,
    upstreams: &HashMap<String, usize>,
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
    match l.protocol.as_deref() {
        None | Some("http") => {}
        Some(other) => b.errs.push(invalid(
            format!("{key}.protocol"),
            format!("unknown protocol {other:?}; expected \"http\""),
        )),
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
        .filter_map(|(i, r)| build_route(b, &format!("{key}.routes[{i}]"), r, upstreams))
        .collect();
    if b.errs.len() > start {
        return None;
    }
    Some(Listener {
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
    upstreams: &HashMap<String, usize>,
) -> Option<Route> {
    let Some(&upstream) = upstreams.get(&r.upstream) else {
        b.errs.push(invalid(
            format!("{key}.upstream"),
            format!(
                "unknown upstream {:?}; define it in an [[upstreams]] entry",
                r.upstream
            ),
        ));
        return None;
    };
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
