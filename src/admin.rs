//! The admin listener (`[admin] listen`, loopback by default): `/metrics` (Prometheus text),
//! `/healthz` (the process runs), `/readyz` (every listener bound with valid TLS material, and not
//! draining), `/certs` (the certificate inventory as JSON). It runs as a pingora background
//! service and keeps answering during the shutdown drain, so `/readyz` can say 503 then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::listeners::binding::Bindings;
use crate::metrics::Metrics;
use crate::tls::reloader::Reloadable;

/// What a readiness check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Serving.
    Ready,
    /// Not serving yet or any more, and why.
    NotReady(String),
}

/// The pure readiness rule: draining beats everything, then every listener must be bound, then
/// every listener certificate must be valid now.
pub fn readiness(draining: bool, unbound: &[&str], expired: &[&str]) -> Readiness {
    if draining {
        return Readiness::NotReady("draining: shutting down".into());
    }
    if let Some(l) = unbound.first() {
        return Readiness::NotReady(format!("listener {l} is not listening yet"));
    }
    if let Some(store) = expired.first() {
        return Readiness::NotReady(format!("{store} has expired"));
    }
    Readiness::Ready
}

/// The admin service.
pub struct Admin {
    state: Arc<AdminState>,
}

/// What the admin endpoints report on, shared by the connections being served.
struct AdminState {
    /// Where it listens.
    listen: SocketAddr,
    /// Every collector.
    metrics: Arc<Metrics>,
    /// Which listeners hold their address.
    bindings: Arc<Bindings>,
    /// Every store with its users.
    inventory: Vec<(Arc<dyn Reloadable>, Vec<String>)>,
    /// Set when the shutdown drain starts.
    draining: AtomicBool,
}

impl Admin {
    /// An admin service on `listen`.
    pub fn new(
        listen: SocketAddr,
        metrics: Arc<Metrics>,
        bindings: Arc<Bindings>,
        inventory: Vec<(Arc<dyn Reloadable>, Vec<String>)>,
    ) -> Self {
        Self {
            state: Arc::new(AdminState {
                listen,
                metrics,
                bindings,
                inventory,
                draining: AtomicBool::new(false),
            }),
        }
    }
}

impl AdminState {
    fn ready(&self) -> Readiness {
        let unbound = self.bindings.unbound();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let expired: Vec<&str> = self
            .inventory
            .iter()
            .filter(|(store, users)| {
                users.iter().any(|u| u.starts_with("listener "))
                    && store.summary().is_some_and(|s| s.not_after_unix < now)
            })
            .map(|(store, _)| store.label())
            .collect();
        readiness(self.draining.load(Ordering::Acquire), &unbound, &expired)
    }

    fn certs(&self) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = self
            .inventory
            .iter()
            .map(|(store, users)| {
                let (last_reload, last_error) = store.reload_status();
                serde_json::json!({
                    "store": store.label(),
                    "used_by": users,
                    "source": store.sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "certificate": store.summary(),
                    "last_reload": last_reload.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                    "last_error": last_error,
                })
            })
            .collect();
        serde_json::Value::Array(entries)
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match req.uri().path() {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/healthz" => (StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.ready() {
                Readiness::Ready => (StatusCode::OK, "text/plain", b"ready\n".to_vec()),
                Readiness::NotReady(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{why}\n").into_bytes(),
                ),
            },
            "/certs" => (
                StatusCode::OK,
                "application/json",
                format!("{:#}\n", self.certs()).into_bytes(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = http::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
        }
        resp
    }
}

#[async_trait]
impl BackgroundService for Admin {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let state = &self.state;
        let listener = match tokio::net::TcpListener::bind(state.listen).await {
            Ok(l) => l,
            Err(e) => {
                // Named by its key, as every start-up failure is (a second instance on the same
                // config meets this one first).
                tracing::error!("admin.listen: cannot bind {}: {e}; exiting", state.listen);
                std::process::exit(crate::EXIT_USAGE.into());
            }
        };
        tracing::info!(addr = %state.listen, "admin listening (/metrics, /healthz, /readyz, /certs)");
        let serve = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let resp = state.respond(&req);
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %e, "admin connection failed");
                    }
                });
            }
        };
        let drain = async {
            // Keep answering while draining, so /readyz can report it until the process exits.
            let _ = shutdown.changed().await;
            state.draining.store(true, Ordering::Release);
            std::future::pending::<()>().await;
        };
        tokio::join!(serve, drain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_rules() {
        assert_eq!(readiness(false, &[], &[]), Readiness::Ready);
        assert!(
            matches!(readiness(true, &[], &[]), Readiness::NotReady(w) if w.starts_with("draining"))
        );
        assert!(
            matches!(readiness(false, &["https"], &[]), Readiness::NotReady(w) if w.contains("https"))
        );
        assert!(
            matches!(readiness(false, &[], &["listener x certificate"]), Readiness::NotReady(w) if w.contains("expired"))
        );
    }
}
