#!/usr/bin/env bash
# Slow clients against a release build: slowhttptest in slow-header
# (slowloris), slow-body (R.U.D.Y.) and slow-read modes, 1000 connections
# each, while wrk measures legitimate traffic through the same frontend.
# Legitimate traffic must see no errors and a p99 under 50 ms.
#
#   scripts/slow-clients.sh            # DURATION=30 per mode by default
#
# Installs slowhttptest and wrk (Debian packages) when missing, builds the
# release binary and the bare hyper origin (examples/bare_hyper.rs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${DURATION:-30}"
conns="${CONNECTIONS:-1000}"
need=()
command -v slowhttptest >/dev/null || need+=(slowhttptest)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}"
fi
# BUILD=0 uses the release binaries as they are.
if [[ "${BUILD:-1}" == 1 ]]; then
  (cd "$here" && cargo build --release --quiet && cargo build --release --quiet --example bare_hyper)
fi
# 1000 slow connections on each side of the proxy and wrk's: raise the
# open-file limit, within the hard limit.
want=65536; hard=$(ulimit -Hn)
[[ "$hard" == unlimited || "$hard" -ge "$want" ]] || want="$hard"
ulimit -n "$want"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

origin_port=$(port)
"$here/target/release/examples/bare_hyper" "127.0.0.1:$origin_port" 2>/dev/null & pids+=($!)
wait_port "$origin_port"
proxy_port=$(port)
cat >"$work/switchyard.toml" <<TOML
[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:$proxy_port"
default_backend = "origin"
[[backend]]
name = "origin"
  [[backend.server]]
  name = "o1"
  address = "127.0.0.1:$origin_port"
TOML
RUST_LOG=warn "$here/target/release/switchyard" run -c "$work/switchyard.toml" \
  --state-dir "$work/state" 2>"$work/proxy.log" & pids+=($!)
wait_port "$proxy_port"
url="http://127.0.0.1:$proxy_port/"

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for mode in H B X; do
  case $mode in
    H) name="slow headers"; args=(-H -i 10) ;;
    B) name="slow body"; args=(-B -i 10 -s 8192) ;;
    X) name="slow read"; args=(-X -k 3 -n 5 -w 1 -y 4 -z 4) ;;
  esac
  slowhttptest "${args[@]}" -c "$conns" -r 500 -l "$duration" -u "$url" -p 3 \
    -o "$work/slow-$mode" >"$work/slow-$mode.out" 2>&1 & slow=$!
  sleep 3   # let the slow connections ramp up
  wrk -t 2 -c 32 -d "$((duration - 5))s" --latency "$url" >"$work/wrk-$mode.out" 2>&1
  wait "$slow" || true
  p99=$(awk '/^ +99%/ {print $2}' "$work/wrk-$mode.out")
  reqs=$(awk '/requests in/ {print $1}' "$work/wrk-$mode.out")
  errors=$(awk '/Socket errors|Non-2xx/ {print}' "$work/wrk-$mode.out" | tr '\n' ' ')
  ms=$(awk -v v="$p99" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print -1 }')
  verdict=$(awk -v ms="$ms" -v e="$errors" 'BEGIN { print (ms >= 0 && ms < 50 && e == "") ? "ok" : "FAIL" }')
  [[ $verdict == ok ]] || status=1
  # slowhttptest colours its lines; it ends early once the proxy has closed
  # every slow connection, and says when and why.
  slow_end=$(sed 's/\x1b\[[0-9;]*m//g' "$work/slow-$mode.out" \
    | grep -E "^(Test ended on|Exit status:)" | tr -s ' ' | tr '\n' ' ' || true)
  printf '%-13s wrk: %s requests, p99 %s, errors: %s -> %s | slowhttptest: %s\n' \
    "$name" "$reqs" "$p99" "${errors:-none}" "$verdict" "$slow_end"
done
exit $status
