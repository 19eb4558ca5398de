#!/usr/bin/env bash
# What the kernel's send path costs a proxy under HTTP/1.1 keep-alive load
# (the `ka-c64` scenario of ../shared/bench), for HAProxy and Switchyard:
# the proxy runs on CPU 1, wrk (64 connections) on CPU 0, and `perf record
# -e cpu-clock` samples the proxy for D seconds. Printed per proxy: the
# requests served, the system calls that send (from `strace -c -f` over a
# second run of D seconds) and the share of the proxy's samples spent in
# the symbols of the send path (the syscall entry points, the file layer
# that writev crosses, the socket layer down to tcp_sendmsg_locked).
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/write-path.sh [haproxy] [switchyard]
#
# Needs perf, strace, wrk, nginx and haproxy (Debian packages; installed if
# missing; perf: linux-perf).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need perf:linux-perf strace:strace wrk:wrk nginx:nginx haproxy:haproxy
D=${D:-5}
targets=${*:-haproxy switchyard}
W=$(mktemp -d /tmp/write-path.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$W"' EXIT
mkdir -p "$W/logs" "$W/conf" "$W/out"
start_origins "$W" 19901 19902
port=19910
# The symbols of the send path: sendto, sendmsg and writev from their libc
# wrappers down to the socket layer. tcp_sendmsg_locked and below are the
# same for every way in, and fdget is shared with the receives: left out.
send_path='^(__send|__sys_sendto|__x64_sys_sendto|__libc_sendmsg|__sys_sendmsg|___sys_sendmsg|____sys_sendmsg|copy_msghdr_from_user|__GI___writev|do_writev|vfs_writev|do_iter_readv_writev|sock_write_iter|rw_verify_area|security_file_permission|fdget_pos|import_iovec|__import_iovec|copy_iovec_from_user|iovec_from_user|sock_sendmsg|inet_sendmsg|tcp_sendmsg|security_socket_sendmsg|bpf_lsm_socket_sendmsg)$'
for t in $targets; do
  port=$((port + 1))
  case $t in
    haproxy)
      haproxy_cfg "$port" 19901 19902 > "$W/conf/h.cfg"
      taskset -c 1 haproxy -db -f "$W/conf/h.cfg" >"$W/logs/$t.log" 2>&1 &
      ;;
    switchyard)
      switchyard_cfg "$port" 19901 19902 > "$W/conf/s.toml"
      SWITCHYARD_ADMIN_TOKEN=write-path-token-123456 taskset -c 1 \
        "${SWITCHYARD_BIN:?}" run -c "$W/conf/s.toml" --threads 1 --state-dir "$W/state" >"$W/logs/$t.log" 2>&1 &
      ;;
    *) echo "unknown target $t"; continue ;;
  esac
  pid=$!
  echo "$pid" > "$W/$t.pid"
  wait_port "$port" || { echo "$t did not start"; continue; }
  taskset -c 0 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
  perf record -q -o "$W/out/$t.perf" -e cpu-clock -p "$pid" -- sleep "$D" >/dev/null 2>&1 &
  sampler=$!
  n=$(taskset -c 0 wrk -t1 -c64 -d"$D"s "http://127.0.0.1:$port/" | awk '/requests in/{print $1}')
  wait "$sampler"
  strace -c -f -p "$pid" -o "$W/out/$t.strace" 2>/dev/null &
  tracer=$!
  sleep 1
  m=$(taskset -c 0 wrk -t1 -c64 -d"$D"s "http://127.0.0.1:$port/" | awk '/requests in/{print $1}')
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null
  echo "$t: $n requests under perf"
  awk -v n="$m" '$NF ~ /^(sendto|sendmsg|writev|write)$/ && $4 ~ /^[0-9]+$/ { printf "  %-8s %.2f per request\n", $NF, $4 / n }' "$W/out/$t.strace"
  perf report -i "$W/out/$t.perf" --no-children --sort sym -g none 2>/dev/null \
    | awk -v re="$send_path" '$1 ~ /%$/ && $3 ~ re { s += $1; printf "  %6s  %s\n", $1, $3 } END { printf "  send path: %.2f%% of the samples\n", s }'
done
