//! Calls the `Echo` service and the gRPC health check over TLS, e.g. through smq-edge.
//!
//! Usage: grpc-call [--addr localhost:17006] [--ca certs/dev/ca.crt] [--message hello]

use clap::Parser;
use testkit::echo::EchoRequest;
use testkit::echo::echo_client::EchoClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
struct Args {
    /// host:port of the TLS endpoint; the host is checked against the certificate.
    #[arg(long, default_value = "localhost:17006")]
    addr: String,
    /// CA certificate (PEM) to trust.
    #[arg(long, default_value = "certs/dev/ca.crt")]
    ca: std::path::PathBuf,
    /// Message to echo.
    #[arg(long, default_value = "hello")]
    message: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = std::fs::read_to_string(&args.ca)?;
    let host = args
        .addr
        .rsplit_once(':')
        .map_or(args.addr.as_str(), |(h, _)| h);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(host);
    let channel = Endpoint::from_shared(format!("https://{}", args.addr))?
        .tls_config(tls)?
        .connect()
        .await?;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await?;
    println!(
        "grpc.health.v1.Health/Check: {:?}",
        health.into_inner().status()
    );
    let reply = EchoClient::new(channel)
        .unary(EchoRequest {
            message: args.message,
            ..Default::default()
        })
        .await?;
    println!("testkit.echo.Echo/Unary: {:?}", reply.into_inner().message);
    Ok(())
}
