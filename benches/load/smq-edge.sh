#!/usr/bin/env bash
# Runs smq-edge in the shared TLS benchmark harness (../shared/bench): writes a config from the
# harness's environment and execs the release binary in the foreground.
#
#   cargo build --release
#   PROXY_CMD="$PWD/benches/load/smq-edge.sh" ../shared/bench/compare.sh
#
# Environment (set by the harness): PROXY_PORT, BENCH_CERT, BENCH_KEY, BACKEND_H1, BACKEND_GRPC,
# WORKERS. Routes as the peers: /bench.Echo/* and /grpc.health.v1.Health/* to the gRPC backend
# over h2c, the rest to the HTTP/1.1 backend.
set -euo pipefail
: "${PROXY_PORT:?}" "${BENCH_CERT:?}" "${BENCH_KEY:?}" "${BACKEND_H1:?}" "${BACKEND_GRPC:?}"
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SMQ_EDGE_BIN:-$here/target/release/smq-edge}
# One file per port, rewritten on every start (exec leaves no chance to delete a temporary one).
conf=${TMPDIR:-/tmp}/smq-edge-bench-$PROXY_PORT.toml
cat > "$conf" <<TOML
[server]
threads = ${WORKERS:-2}

# The benchmark measures the proxy, not its logging.
[access_log]
enabled = false

[[listeners]]
name = "bench"
listen = "127.0.0.1:$PROXY_PORT"
[listeners.tls]
cert = "$BENCH_CERT"
key = "$BENCH_KEY"
[[listeners.routes]]
path_prefix = "/bench.Echo"
upstream = "grpc"
[[listeners.routes]]
path_prefix = "/grpc.health.v1.Health"
upstream = "grpc"
[[listeners.routes]]
upstream = "web"

[[upstreams]]
name = "web"
address = "$BACKEND_H1"
protocol = "http1"

[[upstreams]]
name = "grpc"
address = "$BACKEND_GRPC"
protocol = "h2c"
TOML
exec "$bin" --config "$conf"
