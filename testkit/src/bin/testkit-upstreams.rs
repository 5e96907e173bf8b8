//! Runs the test upstreams as stand-ins for SuperMQ services, for trying smq-edge by hand:
//! an HTTP/1.1 server that reports what it received, and the h2c gRPC `Echo` + health server.
//!
//! Usage: testkit-upstreams [--http 127.0.0.1:9006] [--grpc 127.0.0.1:7006]

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where the HTTP/1.1 upstream listens (default: SuperMQ Clients' HTTP port).
    #[arg(long, default_value = "127.0.0.1:9006")]
    http: SocketAddr,
    /// Where the h2c gRPC upstream listens (default: SuperMQ Clients' gRPC port).
    #[arg(long, default_value = "127.0.0.1:7006")]
    grpc: SocketAddr,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let http = testkit::http_upstream::start_on(args.http).await;
    let grpc = testkit::grpc_upstream::start_on(args.grpc).await;
    println!(
        "http upstream on {}, grpc (h2c) upstream on {}",
        http.addr, grpc.addr
    );
    let _ = tokio::signal::ctrl_c().await;
}
