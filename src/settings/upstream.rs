//! `[[upstreams]]` → `Upstream`: address, protocol, timeouts and TLS (see `tls`).

use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::config::{Origin, Upstream, UpstreamProtocol};

use super::file::UpstreamSection;
use super::{
    Build, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP1_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_H2_STREAMS, DEFAULT_WRITE_TIMEOUT, duration, invalid, optional_duration, tls,
};

pub(super) fn build(b: &mut Build<'_>, key: &str, u: &UpstreamSection) -> Option<Upstream> {
    let start = b.errs.len();
    if u.name.is_empty() {
        b.errs
            .push(invalid(format!("{key}.name"), "must not be empty"));
    }
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2c") => UpstreamProtocol::H2c,
        Some("tcp") => UpstreamProtocol::Tcp,
        Some(other) => {
            b.errs.push(invalid(
                format!("{key}.protocol"),
                format!("unknown protocol {other:?}; expected \"http1\", \"h2c\" or \"tcp\""),
            ));
            UpstreamProtocol::Http1
        }
    };
    let address = match u.address.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => Some(a),
        Ok(None) | Err(_) => {
            b.errs.push(invalid(
                format!("{key}.address"),
                format!("{:?} is not a resolvable host:port", u.address),
            ));
            None
        }
    };
    let connect_timeout = duration(
        &mut b.errs,
        &format!("{key}.connect_timeout"),
        u.connect_timeout.as_deref(),
    )
    .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let default_read = match protocol {
        UpstreamProtocol::Http1 => Some(DEFAULT_HTTP1_READ_TIMEOUT),
        // gRPC streams and tcp sessions may stay silent for a long time; a read timeout would
        // cut them (tcp listeners have their own idle timeout).
        UpstreamProtocol::H2c | UpstreamProtocol::Tcp => None,
    };
    let read_timeout = optional_duration(
        &mut b.errs,
        &format!("{key}.read_timeout"),
        u.read_timeout.as_deref(),
        default_read,
    );
    let write_timeout = optional_duration(
        &mut b.errs,
        &format!("{key}.write_timeout"),
        u.write_timeout.as_deref(),
        Some(DEFAULT_WRITE_TIMEOUT),
    );
    let idle_timeout = duration(
        &mut b.errs,
        &format!("{key}.idle_timeout"),
        u.idle_timeout.as_deref(),
    )
    .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let max_h2_streams = match u.max_h2_streams {
        Some(0) => {
            b.errs.push(invalid(
                format!("{key}.max_h2_streams"),
                "must be at least 1",
            ));
            DEFAULT_MAX_H2_STREAMS
        }
        Some(n) => n,
        None => DEFAULT_MAX_H2_STREAMS,
    };
    let tls = tls::upstream(b, key, u);
    if b.errs.len() > start {
        return None;
    }
    b.record(format!("{key}.address"), &u.address, Origin::File);
    let name = match protocol {
        UpstreamProtocol::Http1 => "http1",
        UpstreamProtocol::H2c => "h2c",
        UpstreamProtocol::Tcp => "tcp",
    };
    let proxy_protocol = match u.proxy_protocol.as_deref() {
        None | Some("off") => false,
        Some("v2") => true,
        Some(other) => {
            b.errs.push(invalid(
                format!("{key}.proxy_protocol"),
                format!("unknown PROXY protocol version {other:?}; expected \"v2\""),
            ));
            return None;
        }
    };
    b.record_or_default(
        &format!("{key}.proxy_protocol"),
        u.proxy_protocol.is_some(),
        if proxy_protocol { "v2" } else { "off" },
    );
    b.record_or_default(&format!("{key}.protocol"), u.protocol.is_some(), name);
    let shown = |d: Option<Duration>| {
        d.map_or_else(
            || "none".to_owned(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    for (field, set, value) in [
        (
            "connect_timeout",
            u.connect_timeout.is_some(),
            shown(Some(connect_timeout)),
        ),
        (
            "read_timeout",
            u.read_timeout.is_some(),
            shown(read_timeout),
        ),
        (
            "write_timeout",
            u.write_timeout.is_some(),
            shown(write_timeout),
        ),
        (
            "idle_timeout",
            u.idle_timeout.is_some(),
            shown(Some(idle_timeout)),
        ),
    ] {
        b.record_or_default(&format!("{key}.{field}"), set, value);
    }
    b.record_or_default(
        &format!("{key}.max_h2_streams"),
        u.max_h2_streams.is_some(),
        max_h2_streams,
    );
    Some(Upstream {
        proxy_protocol,
        tls,
        name: u.name.clone(),
        address: address?,
        protocol,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        max_h2_streams,
    })
}
