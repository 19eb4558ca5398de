#!/usr/bin/env bash
# Starts Switchyard as a candidate of ../shared/bench/proxy-bench.sh: turns the
# harness's BENCH_* variables into a config (round robin over the two origins,
# pooled keep-alive upstream connections, X-Forwarded-For, no access log) and
# runs the release binary with one worker thread, as the peers run. With
# BENCH_TLS_LISTEN, BENCH_CERT and BENCH_KEY set (the harness's h2tls
# scenarios) a second frontend terminates TLS there with that certificate.
# BENCH_RULES=1 adds a route with one header rule and one rewrite (below).
# BENCH_ACCESS_LOG=text (or json) turns the access log on, one line per
# request on stdout, to measure its cost beside the default figure.
#
#   scripts/build-release.sh        (the release build users get: profile-guided)
#   CANDIDATE_NAME=switchyard CANDIDATE_PORT=18090 \
#   CANDIDATE_CMD="$PWD/benches/switchyard-bench.sh" ../shared/bench/proxy-bench.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$here/target/release/switchyard}"
# One file and state directory per candidate port: the harness gives every
# candidate the same scratch directory.
tag="${BENCH_LISTEN##*:}"
conf="$BENCH_WORKDIR/switchyard-$tag.toml"
# BENCH_RULES=1 sends every request through a route with one request header
# rule and one path rewrite (to the same path), to measure their cost beside
# the plain figure.
rules_route=""
if [ "${BENCH_RULES:-0}" = "1" ]; then
  rules_route='  [[frontend.route]]
  path_prefix = "/"
  rewrite = { regex = "^/(.*)$", to = "/$1" }
  request_headers = { set = { "X-Client" = "{client_ip}" } }
  backend = "origins"'
fi
tls_frontend=""
if [ -n "${BENCH_TLS_LISTEN:-}" ]; then
    tls_frontend="[[frontend]]
name = \"bench-tls\"
listen = \"$BENCH_TLS_LISTEN\"
default_backend = \"origins\"
tls = { certs = [ { cert = \"$BENCH_CERT\", key = \"$BENCH_KEY\" } ] }
"
fi
cat >"$conf" <<TOML
[global]
access_log = "${BENCH_ACCESS_LOG:-off}"
max_connections = 20000

[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "bench"
listen = "$BENCH_LISTEN"
default_backend = "origins"
$rules_route

$tls_frontend
[[backend]]
name = "origins"
balance = "roundrobin"

  [[backend.server]]
  name = "o1"
  address = "$BENCH_ORIGIN1"

  [[backend.server]]
  name = "o2"
  address = "$BENCH_ORIGIN2"
TOML
export RUST_LOG="${RUST_LOG:-warn}"
exec "$bin" run --threads 1 --state-dir "$BENCH_WORKDIR/switchyard-state-$tag" -c "$conf"
