#!/usr/bin/env bash
# What a request costs when each one comes on a new connection (the
# `close-c64` scenario of ../shared/bench), for HAProxy and Switchyard, in
# two figures that the machine's noise does not move:
#
#   instr     user-space instructions per request, counted by callgrind: each
#             proxy runs under valgrind twice, under `wrk -H "Connection:
#             close"` for D1 and then D2 seconds; the difference in
#             instructions divided by the difference in requests removes
#             start-up and shutdown.
#   syscalls  system calls per request, every thread of the proxy, counted by
#             `strace -c -f` over a run of D2 seconds (strace slows the proxy
#             down, not the count per request).
#   alloc     Switchyard's heap blocks per request, by the place that
#             allocates them, from valgrind's DHAT over a run of D2 seconds:
#             every site that allocates at least once per request and at
#             least 1 KiB per request (smaller ones with ALLOC_MIN=bytes).
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/close-per-req.sh instr|syscalls|alloc [haproxy] [switchyard]
#
# CONNS sets wrk's connections (16). KEEP=dir keeps the callgrind files in
# dir. Two nginx origins answer a small body over HTTP/1.1. Needs valgrind
# or strace, wrk, nginx and haproxy, and python3 for alloc (Debian packages;
# installed if missing).
set -u
mode=${1:-}
case $mode in
  instr) tool=valgrind:valgrind ;;
  syscalls) tool=strace:strace ;;
  alloc) tool=valgrind:valgrind ;;
  *) echo "usage: $0 instr|syscalls|alloc [haproxy] [switchyard]"; exit 2 ;;
esac
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/peers-lib.sh"
need "$tool" wrk:wrk nginx:nginx haproxy:haproxy
[ "$mode" = alloc ] && need python3:python3
D1=${D1:-3}; D2=${D2:-9}; CONNS=${CONNS:-16}
targets=${*:-haproxy switchyard}
[ "$mode" = alloc ] && targets=switchyard
W=$(mktemp -d /tmp/close-per-req.XXXXXX)
trap 'for f in $W/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$W"' EXIT
# The proxy's config sits alone in conf/: Switchyard watches its directory,
# and the counts written to out/ must not wake it.
mkdir -p "$W/logs" "$W/conf" "$W/out"
start_origins "$W" 19601 19602
port=19610
# target port out -> starts the proxy (under callgrind in instr mode), writes its pid
start() {
  local t=$1 p=$2 out=$3 wrap=()
  [ "$mode" = instr ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$out")
  [ "$mode" = alloc ] && wrap=(valgrind --tool=dhat --dhat-out-file="$out")
  case $t in
    haproxy)
      haproxy_cfg "$p" 19601 19602 > "$W/conf/h.cfg"
      "${wrap[@]}" haproxy -db -f "$W/conf/h.cfg" >"$W/logs/$t.log" 2>&1 &
      ;;
    switchyard)
      switchyard_cfg "$p" 19601 19602 > "$W/conf/s.toml"
      SWITCHYARD_ADMIN_TOKEN=close-token-123456 "${wrap[@]}" \
        "${SWITCHYARD_BIN:?}" run -c "$W/conf/s.toml" --threads 1 --state-dir "$W/state" >"$W/logs/$t.log" 2>&1 &
      ;;
  esac
  echo $! > "$W/$t.pid"
  wait_port "$p"
}
stop() {
  kill -INT "$(cat "$W/$1.pid")" 2>/dev/null; sleep 1; kill -TERM "$(cat "$W/$1.pid")" 2>/dev/null
  wait "$(cat "$W/$1.pid")" 2>/dev/null
}
# seconds log -> requests wrk completed
load() {
  wrk -t1 -c"$CONNS" -d"$1"s -H "Connection: close" "http://127.0.0.1:$port/" >"$2" 2>&1
  awk '/requests in/{print $1}' "$2"
}
for t in $targets; do
  if [ "$mode" = alloc ]; then
    port=$((port + 1)); out="$W/out/$t.dhat"
    start "$t" "$port" "$out" || { echo "$t did not start"; tail -5 "$W/logs/$t.log"; continue; }
    n=$(load "$D2" "$W/logs/$t.wrk")
    stop "$t"
    for _ in $(seq 1 100); do [ -s "$out" ] && break; sleep 0.2; done
    echo "$t: $n requests; heap blocks per request, by where they are allocated:"
    python3 - "$out" "$n" "${ALLOC_MIN:-1024}" <<'PY'
import json, re, sys
dhat, requests, least = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
# Frames of the allocator and of the standard library's containers say
# nothing about who allocated.
plumbing = re.compile(r"alloc/src/|std/src/alloc|sys/alloc|vgpreload|bytes_mut\.rs|/raw_vec")
rows = []
for site in dhat["pps"]:
    per_request, bytes_per_request = site["tbk"] / requests, site["tb"] / requests
    if per_request < 0.9 or bytes_per_request < least:
        continue
    frames = [dhat["ftbl"][f] for f in site["fs"][1:]]
    named = [f.split(": ", 1)[-1] for f in frames if not plumbing.search(f)]
    rows.append((bytes_per_request, per_request, named[:2]))
for bytes_per_request, per_request, named in sorted(rows, reverse=True):
    print(f"  {per_request:4.2f} x {bytes_per_request / per_request:6.0f} B  " + " <- ".join(n[:110] for n in named))
print(f"  in all: {sum(r[0] for r in rows) / 1024:.1f} KiB per request in these blocks")
PY
    continue
  fi
  if [ "$mode" = syscalls ]; then
    port=$((port + 1))
    start "$t" "$port" "" || { echo "$t did not start"; tail -5 "$W/logs/$t.log"; continue; }
    strace -c -f -p "$(cat "$W/$t.pid")" -o "$W/out/$t.strace" 2>/dev/null &
    tracer=$!
    sleep 1
    n=$(load "$D2" "$W/logs/$t.wrk")
    kill -INT "$tracer"; wait "$tracer" 2>/dev/null
    stop "$t"
    echo "$t: $n requests; system calls per request:"
    awk -v n="$n" '$4 ~ /^[0-9]+$/ && $NF != "total" && $4 / n >= 0.01 { printf "  %-14s %.2f\n", $NF, $4 / n }' "$W/out/$t.strace"
    continue
  fi
  counts=(); reqs=()
  for d in $D1 $D2; do
    port=$((port + 1)); out="$W/out/$t.$d.cg"
    start "$t" "$port" "$out" || { echo "$t did not start"; tail -5 "$W/logs/$t.log"; continue 2; }
    reqs+=("$(load "$d" "$W/logs/$t.$d.wrk")")
    stop "$t"
    for _ in $(seq 1 100); do [ -s "$out" ] && grep -q '^summary:' "$out" && break; sleep 0.2; done
    counts+=("$(grep -m1 '^summary:' "$out" | awk '{print $2}')")
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out" "$KEEP/"
  done
  if [ -n "${counts[0]}" ] && [ -n "${counts[1]}" ] && [ "${reqs[1]:-0}" -gt "${reqs[0]:-0}" ]; then
    echo "$t $(( (counts[1] - counts[0]) / (reqs[1] - reqs[0]) ))"
  else
    echo "$t no figure"
  fi
done
