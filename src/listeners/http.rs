//! The HTTP listener's request path, as pingora phases: pick the route (`request_filter`), build
//! the upstream peer and wait for this worker's connection in progress to a multiplexed upstream
//! (`upstream_peer`, until `connected_to_upstream`), add forwarding headers and rewrite the path
//! (`upstream_request_filter`), and answer failures as HTTP or gRPC (`fail_to_proxy`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::accept::Handshakes;
use super::stats::ListenerStats;
use crate::access_log::{self, AccessLog, RequestView};
use crate::config::{BearerToken, Route};
use crate::respond;
use crate::routes;
use crate::shutdown::{InFlight, InFlightGuard};
use crate::upstream::{ConnectGate, ConnectPass, UpstreamRuntime};

/// One HTTP listener's routing state, shared by all its connections.
pub struct HttpEdge {
    /// Listener name, for logs.
    pub listener: String,
    /// Whether clients reach this listener over TLS (sets `X-Forwarded-Proto`).
    pub is_tls: bool,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// All upstreams; routes hold indexes into this list.
    pub upstreams: Arc<Vec<Arc<UpstreamRuntime>>>,
    /// Counts requests so shutdown can wait for them.
    pub in_flight: InFlight,
    /// Standalone mode's token, required on every non-health HTTP request.
    pub bearer: Option<BearerToken>,
    /// The listener's collectors.
    pub stats: Arc<ListenerStats>,
    /// Where access log lines go, if enabled.
    pub access_log: Option<AccessLog>,
    /// SNI of each open connection.
    pub handshakes: Arc<Handshakes>,
    /// Each route's label for metrics and logs, by route index.
    pub route_labels: Vec<String>,
    /// This worker's connect gate for each multiplexed upstream, by upstream index.
    pub connect_gates: Vec<Option<ConnectGate>>,
}

/// Per-request state, decided once in `request_filter` and read by later phases.
pub struct RequestCtx {
    /// When the request started.
    started: Instant,
    /// Index of the chosen route.
    route: Option<usize>,
    /// Index of the chosen upstream.
    upstream: Option<usize>,
    /// `grpc-status` from the upstream's trailers (a streamed gRPC answer).
    grpc_status: Option<String>,
    /// The connection's SNI, read while the connection is surely open (an HTTP/2 stream's
    /// logging can run after its connection has closed).
    sni: Option<String>,
    /// Path and query to forward when the route strips its prefix.
    rewritten: Option<String>,
    /// This request's turn to open an upstream connection, until pingora has one for it.
    connect_pass: Option<ConnectPass>,
    /// Held for the life of the request; dropping it tells shutdown the request is done.
    _in_flight: InFlightGuard,
}

#[async_trait]
impl ProxyHttp for HttpEdge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            route: None,
            upstream: None,
            grpc_status: None,
            sni: None,
            rewritten: None,
            connect_pass: None,
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if self.is_tls {
            ctx.sni = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .and_then(|a| self.handshakes.sni(a));
        }
        let req = session.req_header();
        let absolute = absolute_form_authority(req);
        let host = absolute.as_deref().or_else(|| request_host(req));
        let target = req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path(), |pq| pq.as_str());
        let unauthorized = self.bearer.as_ref().is_some_and(|token| {
            !respond::is_grpc(session) && !is_health(req.uri.path()) && !has_bearer(req, token)
        });
        if unauthorized {
            respond::unauthorized(session).await?;
            return Ok(true);
        }
        match routes::select(&self.routes, host, target) {
            Some(selected) => {
                tracing::debug!(
                    listener = %self.listener,
                    route = selected.index,
                    upstream = %self.upstreams[selected.route.upstream].config.name,
                    "route selected"
                );
                ctx.route = Some(selected.index);
                ctx.upstream = Some(selected.route.upstream);
                ctx.rewritten = selected.rewritten;
                Ok(false)
            }
            None => {
                respond::no_route(session).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let index = ctx
            .upstream
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route was selected"))?;
        let client = session.client_addr().and_then(|a| a.as_inet()).copied();
        let server = session.server_addr().and_then(|a| a.as_inet()).copied();
        let mut peer = self.upstreams[index].peer(client, server);
        if session.is_upgrade_req() {
            // An upgraded connection (WebSocket) lives as long as its peers want; request
            // timeouts must not cut it. Liveness is the WebSocket/MQTT keep-alive's job.
            peer.options.read_timeout = None;
            peer.options.write_timeout = None;
        }
        // A retry gives back the pass of its failed attempt before queueing again.
        ctx.connect_pass = None;
        if let Some(gate) = &self.connect_gates[index] {
            ctx.connect_pass = gate
                .enter(self.upstreams[index].config.connect_timeout)
                .await;
        }
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // The connection is pooled now (or was already): the next request multiplexes over it.
        ctx.connect_pass = None;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_pass = None;
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // An HTTP/1.1 request in absolute form (`GET https://host/path`) names its host in the
        // URI; origin servers get origin form with that host in `Host` (RFC 9112 §3.2.2).
        if let Some(authority) = absolute_form_authority(upstream_request) {
            upstream_request.insert_header(http::header::HOST, authority)?;
            if ctx.rewritten.is_none() {
                let origin_form = upstream_request
                    .uri
                    .path_and_query()
                    .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
                ctx.rewritten = Some(origin_form);
            }
        }
        if let Some(path) = ctx.rewritten.take() {
            let uri = path
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewritten path", e))?;
            upstream_request.set_uri(uri);
        }
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        if let Some(ip) = client_ip {
            let forwarded_for = match upstream_request.headers.get("x-forwarded-for") {
                Some(prior) => format!("{}, {ip}", String::from_utf8_lossy(prior.as_bytes())),
                None => ip.clone(),
            };
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
            upstream_request.insert_header("x-real-ip", ip)?;
        }
        let proto = if self.is_tls { "https" } else { "http" };
        upstream_request.insert_header("x-forwarded-proto", proto)?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let view = RequestView {
            route: ctx.route.map_or("none", |i| self.route_labels[i].as_str()),
            upstream: ctx.upstream.map(|i| self.upstreams[i].config.name.as_str()),
            started: ctx.started,
            sni: ctx.sni.take(),
            grpc_status: ctx.grpc_status.take(),
        };
        access_log::record(&self.stats, self.access_log.as_ref(), session, e, view);
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.grpc_status = trailers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(())
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, _error: &Error) -> bool {
        // `fail_to_proxy` logs every failure once, with the listener and upstream names.
        true
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let upstream = ctx.upstream.map(|i| self.upstreams[i].config.name.as_str());
        if let (Some(name), ErrorSource::Upstream) = (upstream, e.esource()) {
            let kind = respond::upstream_error_kind(e);
            self.stats
                .metrics
                .upstream_errors
                .with_label_values(&[name, kind])
                .inc();
        }
        respond::proxy_failure(session, e, &self.listener, upstream).await
    }
}

/// The authority of an absolute-form request target (`GET https://host:port/path`), which
/// pingora keeps verbatim for the wire while `uri` holds only the path.
fn absolute_form_authority(req: &RequestHeader) -> Option<String> {
    let raw = req.raw_path();
    if matches!(raw.first(), None | Some(b'/' | b'*')) {
        return None;
    }
    http::Uri::try_from(raw)
        .ok()?
        .authority()
        .map(|a| a.as_str().to_owned())
}

/// Health endpoints stay open in standalone mode, for load balancers and orchestrators.
fn is_health(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/")
}

/// Whether the request carries `Authorization: Bearer <token>`.
fn has_bearer(req: &RequestHeader, token: &BearerToken) -> bool {
    req.headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| token.matches(presented))
}

/// The host the client asked for: `Host` for HTTP/1.1, `:authority` for HTTP/2.
fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}
