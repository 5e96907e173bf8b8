//! Answers the proxy writes itself: no route, and upstream failures. The one place that maps an
//! internal error to an HTTP status, or to a gRPC status for gRPC clients, which need a
//! trailers-only response (`grpc-status` 14 UNAVAILABLE) rather than a bare stream reset.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

/// gRPC status UNAVAILABLE: the upstream could not be reached.
pub const GRPC_UNAVAILABLE: u16 = 14;
/// gRPC status UNIMPLEMENTED: no route serves this method.
pub const GRPC_UNIMPLEMENTED: u16 = 12;
/// gRPC status DEADLINE_EXCEEDED: the upstream did not answer in time.
pub const GRPC_DEADLINE_EXCEEDED: u16 = 4;

/// Answers a request no route matched: 404, or UNIMPLEMENTED for gRPC.
pub async fn no_route(session: &mut Session) -> Result<()> {
    if is_grpc(session) {
        write_grpc_status(session, GRPC_UNIMPLEMENTED, "no route for this method").await
    } else {
        session
            .respond_error_with_body(404, Bytes::from_static(b"no route\n"))
            .await
    }
}

/// Answers a request the proxy could not complete, if the client can still be answered, and logs
/// the failure once with the listener and upstream it concerns.
pub async fn proxy_failure(
    session: &mut Session,
    e: &Error,
    listener: &str,
    upstream: Option<&str>,
) -> FailToProxy {
    let code = http_status(e);
    let upstream_name = upstream.unwrap_or("-");
    let grpc = is_grpc(session).then_some(match code {
        504 => (GRPC_DEADLINE_EXCEEDED, "timed out"),
        _ => (GRPC_UNAVAILABLE, "unavailable"),
    });
    // The log names what the client is told: a gRPC client gets HTTP 200 and a grpc-status.
    match (code, grpc) {
        (0, _) => {
            tracing::debug!(listener, upstream = upstream_name, error = %e, "client went away")
        }
        (_, Some((grpc_status, _))) => {
            tracing::error!(listener, upstream = upstream_name, grpc_status, error = %e, "request failed")
        }
        (_, None) => {
            tracing::error!(listener, upstream = upstream_name, status = code, error = %e, "request failed")
        }
    }
    let answerable = code != 0 && session.response_written().is_none();
    if answerable {
        let written = match grpc {
            Some((status, what)) => {
                let message = format!(
                    "smq-edge: upstream {upstream_name} {what}: {}",
                    e.etype().as_str()
                );
                write_grpc_status(session, status, &message).await
            }
            None => session.respond_error(code).await,
        };
        if let Err(err) = written {
            tracing::debug!(listener, error = %err, "could not write the error response");
        }
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

/// Every `kind` label of `smq_edge_upstream_errors_total`.
pub const UPSTREAM_ERROR_KINDS: &[&str] = &["connect", "tls_verify", "other"];

/// A bounded label for why reaching an upstream failed: `tls_verify` when the upstream's
/// certificate was refused, `connect` for connection failures, `other` otherwise.
pub fn upstream_error_kind(e: &Error) -> &'static str {
    let text = e.to_string();
    if text.contains("invalid peer certificate") || text.contains("InvalidCertificate") {
        "tls_verify"
    } else if matches!(
        e.etype(),
        ErrorType::ConnectRefused
            | ErrorType::ConnectTimedout
            | ErrorType::ConnectError
            | ErrorType::ConnectNoRoute
            | ErrorType::TLSHandshakeFailure
    ) {
        "connect"
    } else {
        "other"
    }
}

/// The HTTP status for an error: 504 for upstream timeouts, 502 for other upstream failures,
/// 0 when the client itself is gone (nothing to answer).
pub fn http_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Answers a request without the standalone-mode bearer token: 401, without touching the
/// upstream.
pub async fn unauthorized(session: &mut Session) -> Result<()> {
    let mut resp = ResponseHeader::build(401, Some(3))?;
    resp.insert_header(http::header::WWW_AUTHENTICATE, "Bearer")?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    let body = Bytes::from_static(b"missing or wrong bearer token\n");
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Whether the request is gRPC (by its content type).
pub fn is_grpc(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC response: HTTP 200 whose single HEADERS frame carries the status.
async fn write_grpc_status(session: &mut Session, status: u16, message: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", status.to_string())?;
    resp.insert_header("grpc-message", percent_encode(message))?;
    session.write_response_header(Box::new(resp), true).await
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII except `%` stays as is.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_502_and_timeouts_to_504() {
        let refused = Error::explain(ErrorType::ConnectRefused, "x").into_up();
        assert_eq!(http_status(&refused), 502);
        let timeout = Error::explain(ErrorType::ConnectTimedout, "x").into_up();
        assert_eq!(http_status(&timeout), 504);
        let gone = Error::explain(ErrorType::ConnectionClosed, "x").into_down();
        assert_eq!(http_status(&gone), 0);
        let internal = Error::explain(ErrorType::InternalError, "x");
        assert_eq!(http_status(&internal), 500);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%ç"), "a b%25%C3%A7");
    }
}
