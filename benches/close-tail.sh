#!/usr/bin/env bash
# The latency distribution with a new connection per request, as the shared
# harness's close-c64 scenario loads it (wrk, 64 connections, `Connection:
# close`), for HAProxy and Switchyard with the access log off and on, each
# pinned to CPU 1 with wrk and two nginx origins on CPU 0. Per run: requests/s
# and wrk's percentiles (50, 75, 90, 99), and for Switchyard with the access
# log on, the percentiles of its own `total_ms` (from the request head read to
# the response's last byte written), from the lines the run logged: what of
# the client's latency the proxy itself holds the request.
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/close-tail.sh
#
# ROUNDS sets the rounds (5), SECS each run's length (10). The targets take
# turns in an order rotated every round. Needs wrk, nginx and haproxy
# (installed if missing).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need wrk:wrk nginx:nginx haproxy:haproxy taskset:util-linux
ROUNDS=${ROUNDS:-5}; SECS=${SECS:-10}
bin=${SWITCHYARD_BIN:?set SWITCHYARD_BIN to a release build}
W=$(mktemp -d /tmp/close-tail.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/conf"
taskset -c 0 bash -c "$(declare -f start_origins); start_origins $W 19801 19802"
for _ in $(seq 1 50); do [ -s "$W/origin1.pid" ] && [ -s "$W/origin2.pid" ] && break; sleep 0.1; done
targets=(haproxy switchyard switchyard_log)
declare -A port=([haproxy]=19811 [switchyard]=19812 [switchyard_log]=19813)
haproxy_cfg 19811 19801 19802 "" > "$W/conf/h.cfg"
taskset -c 1 haproxy -db -f "$W/conf/h.cfg" >"$W/logs/haproxy.log" 2>&1 &
echo $! > "$W/haproxy.pid"
for t in switchyard switchyard_log; do
  # Each in a directory of its own: Switchyard watches its config's.
  mkdir -p "$W/conf/$t"
  switchyard_cfg "${port[$t]}" 19801 19802 > "$W/conf/$t/s.toml"
  [ "$t" = switchyard_log ] && sed -i 's/^access_log = "off"/access_log = "text"/' "$W/conf/$t/s.toml"
  taskset -c 1 "$bin" run -c "$W/conf/$t/s.toml" --threads 1 --state-dir "$W/state-$t" \
    >"$W/logs/$t.out" 2>"$W/logs/$t.err" &
  echo $! > "$W/$t.pid"
done
for t in "${targets[@]}"; do
  wait_port "${port[$t]}" || { echo "$t did not start"; tail -5 "$W/logs/$t"*; exit 1; }
done
n=${#targets[@]}
printf '%-5s %-15s %8s %8s %8s %8s %8s   %s\n' round target req/s p50_ms p75_ms p90_ms p99_ms "own total_ms: p50 p90 p99 p99.9"
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(( (i + r - 1) % n ))]}
    logged=0
    [ "$t" = switchyard_log ] && logged=$(wc -l < "$W/logs/$t.out")
    out=$(taskset -c 0 wrk -t1 -c64 -d"$SECS"s --latency -H "Connection: close" "http://127.0.0.1:${port[$t]}/" 2>&1)
    # wrk prints 50%, 75%, 90% and 99% in us, ms or s: all in ms here.
    pct=$(awk '/Latency Distribution/ { on = 1; next }
      on && /%/ { v = $2; m = 1; if (v ~ /us$/) m = 0.001; else if (v ~ /ms$/) m = 1; else if (v ~ /s$/) m = 1000
                  sub(/[a-z]+$/, "", v); printf "%8.2f ", v * m; if (++k == 4) exit }' <<<"$out")
    rps=$(awk '/Requests\/sec/ { printf "%d", $2 }' <<<"$out")
    own=""
    if [ "$t" = switchyard_log ]; then
      # Lines are written in batches every 20 ms: wait for the last one.
      sleep 0.1
      own=$(tail -n +$((logged + 1)) "$W/logs/$t.out" | grep -o 'total_ms=[0-9.]*' | cut -d= -f2 | sort -n |
        awk '{ a[NR] = $1 } END { if (NR) printf "%.2f %.2f %.2f %.2f (%d lines)", a[int(NR * .5)], a[int(NR * .9)], a[int(NR * .99)], a[int(NR * .999)], NR }')
    fi
    printf '%-5s %-15s %8s %s  %s\n' "$r" "$t" "${rps:-0}" "$pct" "$own"
    sleep 1
  done
done
