#!/usr/bin/env bash
# Where keep-alive latency comes from when the proxy is not the slowest part:
# HAProxy and one or more Switchyard binaries in turn, each pinned to CPU 1
# with the load generator (wrk) and two nginx origins on CPU 0, as
# ../shared/bench runs them. For each run it prints wrk's latency percentiles
# beside how busy each core was (/proc/stat: all but idle and iowait), so a
# run can tell which core set the pace: the proxy's (CPU 1) or the load's
# (CPU 0).
#
#   scripts/build-release.sh
#   benches/ka-tail.sh target/release/switchyard [another build...]
#
# CONNS sets wrk's connections (64), ROUNDS the rounds (3), SECS each run's
# length (8). Needs wrk, nginx and haproxy (installed if missing).
set -u
[ $# -ge 1 ] || { echo "usage: $0 SWITCHYARD_BIN [SWITCHYARD_BIN...]"; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need wrk:wrk nginx:nginx haproxy:haproxy taskset:util-linux
CONNS=${CONNS:-64}; ROUNDS=${ROUNDS:-3}; SECS=${SECS:-8}
W=$(mktemp -d /tmp/ka-tail.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/conf"
taskset -c 0 bash -c "$(declare -f start_origins); start_origins $W 19801 19802"
for _ in $(seq 1 50); do [ -s "$W/origin1.pid" ] && [ -s "$W/origin2.pid" ] && break; sleep 0.1; done
haproxy_cfg 19810 19801 19802 > "$W/conf/h.cfg"
taskset -c 1 haproxy -db -f "$W/conf/h.cfg" >"$W/logs/haproxy.log" 2>&1 &
echo $! > "$W/haproxy.pid"
names=(haproxy); ports=(19810)
i=0
for bin in "$@"; do
  i=$((i + 1)); p=$((19810 + i))
  # Each in a directory of its own: Switchyard watches its config's.
  mkdir -p "$W/conf/s$i"
  switchyard_cfg "$p" 19801 19802 > "$W/conf/s$i/s.toml"
  taskset -c 1 "$bin" run -c "$W/conf/s$i/s.toml" --threads 1 --state-dir "$W/state-$i" >"$W/logs/s$i.log" 2>&1 &
  echo $! > "$W/s$i.pid"
  names+=("switchyard#$i"); ports+=("$p")
done
for k in "${!ports[@]}"; do
  wait_port "${ports[$k]}" || { echo "${names[$k]} did not start"; exit 1; }
  # Warm-up: connections to the origins pooled, caches filled.
  taskset -c 0 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${ports[$k]}/" >/dev/null
done
# cpu_ticks N -> "idle total" clock ticks of CPU N so far
cpu_ticks() { awk -v c="cpu$1" '$1 == c { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
# busy_pct "IDLE0 TOTAL0" N -> CPU N's busy share since then, in %
busy_pct() {
  local a; read -r -a a <<< "$1"
  cpu_ticks "$2" | awk -v i="${a[0]}" -v t="${a[1]}" '{ printf "%.1f", 100 - 100 * ($1 - i) / ($2 - t) }'
}
echo "round target rps p50 p75 p90 p99 stdev cpu0_busy% cpu1_busy%"
for r in $(seq 1 "$ROUNDS"); do
  for k in "${!ports[@]}"; do
    c0=$(cpu_ticks 0); c1=$(cpu_ticks 1)
    out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$SECS"s --latency "http://127.0.0.1:${ports[$k]}/")
    b0=$(busy_pct "$c0" 0); b1=$(busy_pct "$c1" 1)
    echo "$out" | awk -v r="$r" -v t="${names[$k]}" -v b0="$b0" -v b1="$b1" '
      $1 == "Latency" && !sd { sd = $3 }
      $1 == "50%" { p50 = $2 } $1 == "75%" { p75 = $2 } $1 == "90%" { p90 = $2 } $1 == "99%" { p99 = $2 }
      $1 == "Requests/sec:" { rps = $2 }
      END { printf "%s %s %.0f %s %s %s %s %s %s %s\n", r, t, rps, p50, p75, p90, p99, sd, b0, b1 }'
  done
done
