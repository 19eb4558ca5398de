#!/usr/bin/env bash
# Memory per idle keep-alive connection: Switchyard (release build) beside
# bare hyper (examples/bare_hyper.rs), both on this machine.
#
#   cargo build --release && cargo build --release --example bare_hyper
#   benches/idle-memory.sh [connections]      # default 10000
#   SWITCHYARD_BIN=path/to/switchyard benches/idle-memory.sh   # another build
#
# For each server: start it, send one warm-up request, read its RSS; open N
# keep-alive connections one after another, send one request on each and
# read the answer, keep them all open and idle; read the RSS again. The
# figure is (RSS after - RSS before) / N. Switchyard proxies to a bare hyper
# origin (one pooled upstream connection, as requests go one at a time).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-10000}"
bin="${SWITCHYARD_BIN:-$here/target/release/switchyard}"
bare="$here/target/release/examples/bare_hyper"
for f in "$bin" "$bare"; do
  [[ -x "$f" ]] || { echo "missing $f: cargo build --release && cargo build --release --example bare_hyper" >&2; exit 1; }
done
# Each idle connection takes a descriptor in the client and one in the
# server (separate processes); raise the soft limit, within the hard one.
want=$((n + 1024)); hard=$(ulimit -Hn)
[[ "$hard" == unlimited || "$hard" -ge "$want" ]] || { echo "hard open-file limit $hard < $want" >&2; exit 1; }
ulimit -n "$want"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

# Opens N connections, one request each, holds them; prints "ready" on
# stdout once all are idle, then waits to be killed.
cat >"$work/hold.py" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"ok\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed after %d connections" % i)
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        sys.exit("bad answer: %r" % got[:80])
    held.append(s)
print("ready", flush=True)
time.sleep(3600)
PY

measure() { # name pid port
  local name="$1" pid="$2" p="$3"
  python3 - "$p" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
while s.recv(4096): pass
PY
  sleep 1
  local before after
  before=$(rss_kib "$pid")
  coproc HOLD { exec python3 "$work/hold.py" "$p" "$n"; }
  local hold_pid=$HOLD_PID
  pids+=("$hold_pid")
  read -r line <&"${HOLD[0]}"
  [[ "$line" == ready ]] || { echo "$name: client failed" >&2; exit 1; }
  sleep 2
  after=$(rss_kib "$pid")
  kill "$hold_pid"; wait "$hold_pid" 2>/dev/null || true
  awk -v name="$name" -v b="$before" -v a="$after" -v n="$n" \
    'BEGIN { printf "%-12s RSS before %7d KiB  after %7d KiB  per idle connection %.1f KiB\n", name, b, a, (a - b) / n }'
}

origin_port=$(port)
"$bare" "127.0.0.1:$origin_port" 2>/dev/null & pids+=($!); origin_pid=$!
wait_port "$origin_port"
measure "bare hyper" "$origin_pid" "$origin_port"

proxy_port=$(port)
cat >"$work/switchyard.toml" <<TOML
[global]
access_log = "off"
max_connections = $((n + 1000))
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:$proxy_port"
default_backend = "origin"
timeouts = { idle = "10m" }
[[backend]]
name = "origin"
  [[backend.server]]
  name = "o1"
  address = "127.0.0.1:$origin_port"
TOML
RUST_LOG=warn "$bin" run -c "$work/switchyard.toml" --state-dir "$work/state" & pids+=($!); proxy_pid=$!
wait_port "$proxy_port"
measure "switchyard" "$proxy_pid" "$proxy_port"
