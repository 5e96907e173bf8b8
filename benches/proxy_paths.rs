//! Micro-benchmarks of the per-request work smq-edge does itself (not pingora's or rustls'):
//! route matching over the committed SuperMQ route table, reading the current certificate the
//! way every handshake does, building an upstream peer, and a PROXY v2 header.
//!
//! Run: `cargo bench --bench proxy_paths`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use smq_edge::settings::{self, env::NoVars};
use smq_edge::tls::store::CertStore;
use smq_edge::upstream::UpstreamRuntime;

fn committed_config() -> smq_edge::config::Config {
    let text = include_str!("../config.toml").replace("[dev_certs]\ndir = \"certs/dev\"\n", "");
    let file = settings::parse(&text).expect("config.toml parses");
    settings::build(file, &NoVars).expect("config.toml is valid")
}

fn routes(c: &mut Criterion) {
    let config = committed_config();
    let https = &config.listeners[0].routes;
    let mut group = c.benchmark_group("route_select");
    for (name, path) in [
        ("first_route", "/users/42"),
        (
            "wildcard_segment",
            "/4b7e2f1a-0000-4000-8000-000000000000/channels?limit=10",
        ),
        ("strip_prefix", "/ws/c/1/m"),
        ("no_match", "/nothing/here"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                smq_edge::routes::select(black_box(https), Some("localhost:8443"), black_box(path))
            })
        });
    }
    group.finish();
}

fn certificate(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    smq_edge::tls::dev_certs::generate(dir.path()).expect("dev certs");
    let files = smq_edge::config::TlsFiles {
        cert: smq_edge::config::PemSource::file(dir.path().join("server.crt")),
        key: smq_edge::config::PemSource::file(dir.path().join("server.key")),
    };
    let store = Arc::new(
        CertStore::load_pair("bench".into(), &files, smq_edge::tls::provider()).expect("store"),
    );
    c.bench_function("certificate_current", |b| {
        b.iter(|| black_box(store.current()))
    });
}

fn peers(c: &mut Criterion) {
    let config = committed_config();
    let plain = config
        .upstreams
        .iter()
        .find(|u| u.name == "users-http")
        .expect("users-http")
        .clone();
    let runtime = UpstreamRuntime::new(plain, None, None).expect("runtime");
    let client = Some("192.0.2.7:51000".parse().expect("addr"));
    let server = Some("127.0.0.1:8443".parse().expect("addr"));
    c.bench_function("upstream_peer_http1", |b| {
        b.iter(|| black_box(runtime.peer(client, server)))
    });
    c.bench_function("proxy_v2_header", |b| {
        b.iter(|| {
            smq_edge::proxy_protocol::header(
                black_box("192.0.2.7:51000".parse().expect("addr")),
                black_box("127.0.0.1:8883".parse().expect("addr")),
            )
        })
    });
}

criterion_group!(benches, routes, certificate, peers);
criterion_main!(benches);
