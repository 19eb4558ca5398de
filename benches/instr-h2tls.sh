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
need=""
for c in valgrind:valgrind h2load:nghttp2-client nginx:nginx haproxy:haproxy openssl:openssl; do
  command -v "${c%%:*}" >/dev/null 2>&1 || need="$need ${c#*:}"
done
if [ -n "$need" ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >/dev/null 2>&1 || { echo "cannot install:$need"; exit 1; }
fi
N1=${N1:-2000}; N2=${N2:-10000}
targets=${*:-haproxy switchyard}
W=$(mktemp -d /tmp/instr-h2tls.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }
cat "$W/cert.pem" "$W/key.pem" > "$W/both.pem"
for i in 1 2; do
  cat > "$W/origin$i.conf" <<EOF
worker_processes 1; daemon on; pid $W/origin$i.pid; error_log $W/logs/o$i.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000;
  client_body_temp_path $W/cb$i; proxy_temp_path $W/pt$i; fastcgi_temp_path $W/ft$i; uwsgi_temp_path $W/ut$i; scgi_temp_path $W/st$i;
  server { listen 127.0.0.1:1950$i backlog=4096; location / { return 200 "origin=$i\n"; } } }
EOF
  nginx -c "$W/origin$i.conf" -p "$W" || { echo "origin $i failed"; exit 1; }
done
port=19510
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
start() { # target port out -> runs under callgrind, writes pid
  local t=$1 p=$2 out=$3
  case $t in
    haproxy)
      cat > "$W/h.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$p ssl crt $W/both.pem alpn h2,http/1.1
  default_backend origins
backend origins
  balance roundrobin
  server o1 127.0.0.1:19501
  server o2 127.0.0.1:19502
EOF
      valgrind --tool=callgrind --callgrind-out-file="$out" haproxy -db -f "$W/h.cfg" >"$W/logs/$t.log" 2>&1 &
      ;;
    switchyard)
      cat > "$W/s.toml" <<EOF
[global]
access_log = "off"
[admin]
listen = "127.0.0.1:$((p + 50))"
[[frontend]]
name = "web"
listen = "127.0.0.1:$p"
default_backend = "app"
tls = { certs = [ { cert = "$W/cert.pem", key = "$W/key.pem" } ] }
[[backend]]
name = "app"
  [[backend.server]]
  name = "o1"
  address = "127.0.0.1:19501"
  [[backend.server]]
  name = "o2"
  address = "127.0.0.1:19502"
EOF
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
