#!/usr/bin/env bash
# User-space instructions per request for HTTP/2 over TLS (the `h2tls`
# scenario of ../shared/bench), counted by callgrind like
# ../shared/bench/instr-per-req.sh: each proxy runs under valgrind twice,
# with N1 and N2 requests from h2load (16 connections x 10 streams, TLS,
# ALPN h2); the difference divided by N2-N1 removes start-up, handshakes
# and shutdown. Two nginx origins answer a small body over HTTP/1.1.
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/instr-h2tls.sh [haproxy] [switchyard]
#
# KEEP=dir keeps the callgrind files (for callgrind_annotate) in dir.
# Needs valgrind, h2load (nghttp2-client), nginx, haproxy and openssl
# (Debian packages; installed if missing).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need valgrind:valgrind h2load:nghttp2-client nginx:nginx haproxy:haproxy openssl:openssl
N1=${N1:-2000}; N2=${N2:-10000}
targets=${*:-haproxy switchyard}
W=$(mktemp -d /tmp/instr-h2tls.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs"
localhost_cert "$W"
start_origins "$W" 19501 19502
port=19510
start() { # target port out -> runs under callgrind, writes pid
  local t=$1 p=$2 out=$3
  case $t in
    haproxy)
      haproxy_cfg "$p" 19501 19502 "ssl crt $W/both.pem alpn h2,http/1.1" > "$W/h.cfg"
      valgrind --tool=callgrind --callgrind-out-file="$out" haproxy -db -f "$W/h.cfg" >"$W/logs/$t.log" 2>&1 &
      ;;
    switchyard)
      switchyard_cfg "$p" 19501 19502 \
        "tls = { certs = [ { cert = \"$W/cert.pem\", key = \"$W/key.pem\" } ] }" > "$W/s.toml"
      SWITCHYARD_ADMIN_TOKEN=instr-token-123456 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "${SWITCHYARD_BIN:?}" run -c "$W/s.toml" --threads 1 --state-dir "$W/state" >"$W/logs/$t.log" 2>&1 &
      ;;
  esac
  echo $! > "$W/$t.pid"
  wait_port "$p"
}
total() { grep -m1 '^summary:' "$1" | awk '{print $2}'; }
for t in $targets; do
  counts=()
  for n in $N1 $N2; do
    port=$((port + 1)); out="$W/$t.$n.cg"
    start "$t" "$port" "$out" || { echo "$t did not start"; tail -5 "$W/logs/$t.log"; continue 2; }
    h2load -n "$n" -c 16 -m 10 "https://localhost:$port/" >"$W/logs/$t.$n.h2load" 2>&1
    grep -q "$n succeeded" "$W/logs/$t.$n.h2load" || echo "WARNING: $t at $n: $(grep -m1 'requests:' "$W/logs/$t.$n.h2load")"
    kill -INT "$(cat "$W/$t.pid")" 2>/dev/null; sleep 1; kill -TERM "$(cat "$W/$t.pid")" 2>/dev/null
    for _ in $(seq 1 100); do [ -s "$out" ] && grep -q '^summary:' "$out" && break; sleep 0.2; done
    counts+=("$(total "$out")")
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out" "$KEEP/"
  done
  if [ "${#counts[@]}" = 2 ] && [ -n "${counts[0]}" ] && [ -n "${counts[1]}" ]; then
    echo "$t $(( (counts[1] - counts[0]) / (N2 - N1) ))"
  else
    echo "$t no figure"
  fi
done
