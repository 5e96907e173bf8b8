//! Loopback test peers for smq-edge's integration tests: a test PKI ([`pki`]), a plaintext HTTP/1.1
//! upstream that reports what it received ([`http_upstream`]), an h2c gRPC upstream covering
//! every call shape ([`grpc_upstream`]), a mosquitto broker ([`mqtt_broker`]), a WebSocket echo
//! server ([`ws_echo`]), a PROXY-v2-parsing TCP upstream ([`proxy_v2_upstream`]), and the
//! generated gRPC client and server types ([`echo`]).

pub mod grpc_upstream;
pub mod http_upstream;
pub mod mqtt_broker;
pub mod pki;
pub mod proxy_v2_upstream;
pub mod ws_echo;

/// Generated from `proto/echo.proto`.
pub mod echo {
    tonic::include_proto!("testkit.echo");
}
