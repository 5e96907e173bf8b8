//! Loopback test peers for smq-edge's integration tests: a test PKI ([`pki`]), a plaintext HTTP/1.1
//! upstream that reports what it received ([`http_upstream`]), an h2c gRPC upstream covering
//! every call shape ([`grpc_upstream`]), and the generated client and server types ([`echo`]).

pub mod grpc_upstream;
pub mod http_upstream;
pub mod pki;

/// Generated from `proto/echo.proto`.
pub mod echo {
    tonic::include_proto!("testkit.echo");
}
