#!/usr/bin/env bash
# Where a proxy's CPU per request goes, and how often it makes its peers
# sleep and wake: for HAProxy and Switchyard, each pinned to CPU 1 with the
# load generator (wrk) and two nginx origins on CPU 0, as ../shared/bench
# runs them. Per request, in rounds that take the targets in turn:
#
#   user, sys   the proxy's user and kernel CPU time (/proc/PID/task/*/stat)
#   proxy_cs    the proxy's context switches
#   origin_cs   the origins' context switches: each is an origin that slept
#               and was woken by a request the proxy sent
#   wrk_cs      the load generator's (wrk, or h2load in h2tls mode), from
#               `perf stat -e context-switches`
#   syscalls    the proxy's system calls, and epoll_wait among them, from
#               perf's system-call tracepoints
#   segs        TCP segments sent on this machine (`nstat` TcpOutSegs): the
#               client's, the proxy's and the origins' connections together
#   load_busy   CPU 0's busy time (/proc/stat, all but idle and iowait), in
#               µs: the load generator, the origins and the kernel's work for
#               the segments they send. With a new connection per request
#               that core is the bottleneck, so what a proxy makes it do
#               sets the requests per second.
#   faults      the proxy's minor page faults: memory the kernel had to map
#               (and zero) again, as when the heap gave pages back
#
# CPU time varies from round to round on this machine; the split between
# user and kernel time, and the context switches, are what to compare.
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/cpu-split.sh [ka|ka64k|close|h2tls] [haproxy] [switchyard]
#
# ka: HTTP/1.1 keep-alive (wrk); ka64k: the same with a 64 KiB body; close:
# a new connection per request (wrk with `Connection: close`); h2tls: HTTP/2
# over TLS, CONNS connections with 10 streams each (h2load -m10), as the
# harness's h2tls scenario.
#
# A second build of Switchyard joins the rounds as the target
# `switchyard_prev`, from SWITCHYARD_PREV_BIN:
#   SWITCHYARD_BIN=... SWITCHYARD_PREV_BIN=... benches/cpu-split.sh ka haproxy switchyard switchyard_prev
#
# CONNS sets the load generator's connections (64), ROUNDS the rounds (3), SECS each run's
# length (6). Needs wrk, h2load, openssl, nginx, haproxy and perf (installed
# if missing).
set -u
mode=${1:-ka}
path=/
case $mode in
  ka) hdr=() ;;
  ka64k) hdr=(); path=/64k ;;
  close) hdr=(-H "Connection: close") ;;
  h2tls) hdr=() ;;
  *) echo "usage: $0 ka|ka64k|close|h2tls [haproxy] [switchyard] [switchyard_prev]"; exit 2 ;;
esac
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need wrk:wrk h2load:nghttp2-client openssl:openssl nginx:nginx haproxy:haproxy taskset:util-linux perf:linux-perf nstat:iproute2
CONNS=${CONNS:-64}; ROUNDS=${ROUNDS:-3}; SECS=${SECS:-6}
targets=(${*:-haproxy switchyard})
W=$(mktemp -d /tmp/cpu-split.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/conf"
# h2tls: both proxies terminate TLS with one certificate and offer h2.
hbind="" stls=""
if [ "$mode" = h2tls ]; then
  localhost_cert "$W"
  hbind="ssl crt $W/both.pem alpn h2,http/1.1"
  stls="tls = { certs = [ { cert = \"$W/cert.pem\", key = \"$W/key.pem\" } ] }"
fi
taskset -c 0 bash -c "$(declare -f start_origins); start_origins $W 19701 19702"
for _ in $(seq 1 50); do [ -s "$W/origin1.pid" ] && [ -s "$W/origin2.pid" ] && break; sleep 0.1; done
origin_workers=$(for i in 1 2; do pgrep -P "$(cat "$W/origin$i.pid")"; done)
declare -A port
i=0
for t in "${targets[@]}"; do
  i=$((i + 1)); p=$((19710 + i)); port[$t]=$p
  case $t in
    haproxy)
      haproxy_cfg "$p" 19701 19702 "$hbind" > "$W/conf/h.cfg"
      taskset -c 1 haproxy -db -f "$W/conf/h.cfg" >"$W/logs/$t.log" 2>&1 &
      ;;
    switchyard|switchyard_prev)
      bin=$SWITCHYARD_BIN
      [ "$t" = switchyard_prev ] && bin=${SWITCHYARD_PREV_BIN:?}
      # Each in a directory of its own: Switchyard watches its config's.
      mkdir -p "$W/conf/$t"
      switchyard_cfg "$p" 19701 19702 "$stls" > "$W/conf/$t/s.toml"
      SWITCHYARD_ADMIN_TOKEN=split-token-123456 taskset -c 1 \
        "${bin:?}" run -c "$W/conf/$t/s.toml" --threads 1 --state-dir "$W/state-$t" >"$W/logs/$t.log" 2>&1 &
      ;;
    *) echo "unknown target $t"; exit 2 ;;
  esac
  echo $! > "$W/$t.pid"
  wait_port "$p" || { echo "$t did not start"; tail -5 "$W/logs/$t.log"; exit 1; }
done
# switches PID... -> context switches of every thread of the processes
switches() {
  local p t s=0
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      s=$((s + $(awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }' "$t/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$s"
}
# ticks PID -> "user system faults" clock ticks and minor page faults over its threads
ticks() {
  local t s f u=0 k=0 m=0
  for t in /proc/"$1"/task/*; do
    s=$(cat "$t/stat" 2>/dev/null) || continue
    f=(${s##*) })
    u=$((u + f[11])); k=$((k + f[12])); m=$((m + f[7]))
  done
  echo "$u $k $m"
}
# busy0 -> CPU 0's busy clock ticks so far (user, nice, system, irq, softirq)
busy0() {
  awk '/^cpu0 / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
hz=$(getconf CLK_TCK)
for r in $(seq 1 "$ROUNDS"); do
  for t in "${targets[@]}"; do
    pid=$(cat "$W/$t.pid")
    read -r u0 k0 m0 < <(ticks "$pid"); p0=$(switches "$pid"); o0=$(switches $origin_workers)
    b0=$(busy0); nstat -n >/dev/null
    perf stat -x, -o "$W/syscalls" -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait -p "$pid" &
    tracer=$!
    case $mode in
      h2tls) load=(h2load -t1 -c"$CONNS" -m10 -D "$SECS" "https://localhost:${port[$t]}/") ;;
      *) load=(wrk -t1 -c"$CONNS" -d"$SECS"s "${hdr[@]}" "http://127.0.0.1:${port[$t]}$path") ;;
    esac
    out=$(perf stat -x, -e context-switches taskset -c 0 "${load[@]}" 2>&1)
    kill -INT "$tracer"; wait "$tracer"
    read -r u1 k1 m1 < <(ticks "$pid"); p1=$(switches "$pid"); o1=$(switches $origin_workers)
    b1=$(busy0); segs=$(nstat -z TcpOutSegs | awk '$1 == "TcpOutSegs" { print $2 }')
    n=$(awk '/requests in/ { print $1 } /^requests:/ { print $8 }' <<<"$out")
    w=$(awk -F, '/context-switches/ { print $1 }' <<<"$out")
    sc=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$W/syscalls")
    ep=$(awk -F, '/sys_enter_epoll_wait/ { print $1 }' "$W/syscalls")
    awk -v r="$r" -v t="$t" -v n="${n:-0}" -v s="$SECS" -v hz="$hz" -v u=$((u1 - u0)) -v k=$((k1 - k0)) \
        -v pc=$((p1 - p0)) -v oc=$((o1 - o0)) -v w="${w:-0}" -v sc="${sc:-0}" -v ep="${ep:-0}" \
        -v sg="${segs:-0}" -v lb=$((b1 - b0)) -v mf=$((m1 - m0)) 'BEGIN {
      if (n == 0) { printf "%d %-15s no requests\n", r, t; exit }
      us = 1e6 / hz / n
      printf "%d %-15s req/s %6d  user %5.2f us  sys %5.2f us  total %5.2f us  proxy_cs %.3f  origin_cs %.3f  wrk_cs %.3f  syscalls %.2f  epoll_wait %.3f  segs %.2f  load_busy %.1f us  faults %.3f\n",
        r, t, n / s, u * us, k * us, (u + k) * us, pc / n, oc / n, w / n, sc / n, ep / n, sg / n, lb * us, mf / n }'
  done
done
