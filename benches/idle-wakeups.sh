#!/usr/bin/env bash
# How often an idle proxy wakes: HAProxy, an nginx proxy and Switchyard, set
# up as in the shared harness (one thread each, pinned to CPU 1, two nginx
# origins), each having answered one request and then left alone. Counts
# each thread's context switches (voluntary and not, from
# /proc/PID/task/*/status) over SECS seconds and prints them per second. An
# idle process that wakes often takes turns on the core that a busy one
# beside it needs.
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/idle-wakeups.sh
#
# SECS sets the counting time (20). Needs nginx, haproxy and curl (installed
# if missing).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need nginx:nginx haproxy:haproxy curl:curl taskset:util-linux
SECS=${SECS:-20}
bin=${SWITCHYARD_BIN:?set SWITCHYARD_BIN to a release build}
W=$(mktemp -d /tmp/idle-wakeups.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/conf"
start_origins "$W" 19901 19902
haproxy_cfg 19911 19901 19902 "" > "$W/conf/h.cfg"
taskset -c 1 haproxy -db -f "$W/conf/h.cfg" >"$W/logs/haproxy.log" 2>&1 &
echo $! > "$W/haproxy.pid"
cat > "$W/conf/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/nginx-proxy.pid; error_log $W/logs/nginx.err warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $W/np-cb; proxy_temp_path $W/np-pt; fastcgi_temp_path $W/np-ft;
  uwsgi_temp_path $W/np-ut; scgi_temp_path $W/np-st;
  upstream origins { server 127.0.0.1:19901; server 127.0.0.1:19902; keepalive 1024; }
  server { listen 127.0.0.1:19912;
    location / { proxy_pass http://origins; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c 1 nginx -c "$W/conf/nginx.conf" -p "$W" >"$W/logs/nginx.out" 2>&1 &
switchyard_cfg 19913 19901 19902 > "$W/conf/s.toml"
taskset -c 1 "$bin" run -c "$W/conf/s.toml" --threads 1 --state-dir "$W/state" \
  >"$W/logs/switchyard.out" 2>"$W/logs/switchyard.err" &
echo $! > "$W/switchyard.pid"
for port in 19911 19912 19913; do
  wait_port "$port" || { echo "nothing listens on $port"; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
  [ "$code" = 200 ] || { echo "port $port answered $code"; exit 1; }
done
sleep 2   # past the first request's own timers

# name pid... -> "name/thread count" per thread of each process
switches() {
  local name=$1 pid task
  shift
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      echo "$name/$(cat "$task/comm") $(awk '/ctxt_switches/{n+=$2} END{print n}' "$task/status")"
    done
  done
}
pids() {
  switches haproxy "$(cat "$W/haproxy.pid")"
  switches nginx-worker $(pgrep -P "$(cat "$W/nginx-proxy.pid")")
  switches switchyard "$(cat "$W/switchyard.pid")"
}
before=$(pids)
sleep "$SECS"
after=$(pids)
echo "wake-ups per second of each idle thread over ${SECS}s:"
join <(sort <<<"$before") <(sort <<<"$after") |
  awk -v s="$SECS" '{printf "  %-28s %6.1f\n", $1, ($3 - $2) / s; total[substr($1, 1, index($1, "/") - 1)] += ($3 - $2) / s}
    END {for (p in total) printf "  %-28s %6.1f\n", p " (all threads)", total[p]}'
