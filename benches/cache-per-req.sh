#!/usr/bin/env bash
# Per request: user-space instructions, L1 instruction- and data-cache misses
# and mispredicted branches, from callgrind's cache and branch simulation
# (32 KiB 8-way L1 caches, set here rather than taken from the CPU, so that
# figures from machines with other caches compare). Like the instruction counts,
# they are repeatable whatever else the machine does. Runs an instruction
# script (../shared/bench/instr-per-req.sh by default, or
# benches/instr-h2tls.sh) with a `valgrind` on PATH that adds the simulation
# and keeps the callgrind files, then takes the difference between its N1 and
# N2 runs per target, as the script does for instructions.
#
#   scripts/build-release.sh
#   SWITCHYARD_BIN=target/release/switchyard benches/cache-per-req.sh haproxy nginx switchyard
#   SCRIPT=benches/instr-h2tls.sh SWITCHYARD_BIN=... benches/cache-per-req.sh haproxy switchyard
#
# Prints one line per target: instructions, I1 misses, D1 read and write
# misses, mispredicted conditional and indirect branches, per request.
#
# Two knobs, for the working set of many connections:
#   CONNS=256          the load generator's connections (the script's
#                      `h2load -c 16` runs as `-c 256`)
#   LL=1048576,16,64   also simulates a last-level cache of that size,
#                      associativity and line (a 1 MiB L2 per core, say), and
#                      prints its instruction, read and write misses (LLi LLr LLw)
# and KEEP=dir keeps the callgrind files there, to see which functions miss:
#   callgrind_annotate --show=Ir,DLmr,DLmw --sort=DLmr dir/cg/switchyard.10000.cg
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
script="${SCRIPT:-$here/../shared/bench/instr-per-req.sh}"
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
real="$(command -v valgrind)"
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"; keep="$(cd "$KEEP" && pwd)"
else
  keep="$(mktemp -d /tmp/cache-per-req.XXXXXX)"
  trap 'rm -rf "$keep"' EXIT
fi
mkdir -p "$keep/bin" "$keep/cg"
# The script's output file becomes a link to one kept here; `exec` keeps
# the process the script signals.
cat >"$keep/bin/valgrind" <<EOF
#!/usr/bin/env bash
args=()
for a in "\$@"; do
  case \$a in
    --callgrind-out-file=*)
      o="\${a#*=}"; k="$keep/cg/\$(basename "\$o")"
      ln -sf "\$k" "\$o"; args+=("--callgrind-out-file=\$k") ;;
    *) args+=("\$a") ;;
  esac
done
exec "$real" --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 ${LL:+--LL=$LL} --branch-sim=yes "\${args[@]}"
EOF
chmod +x "$keep/bin/valgrind"
if [ -n "${CONNS:-}" ]; then
  command -v h2load >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null; }
  real_h2load="$(command -v h2load)"
  cat >"$keep/bin/h2load" <<EOF
#!/usr/bin/env bash
args=()
while [ \$# -gt 0 ]; do
  if [ "\$1" = -c ]; then args+=(-c "$CONNS"); shift 2; else args+=("\$1"); shift; fi
done
exec "$real_h2load" "\${args[@]}"
EOF
  chmod +x "$keep/bin/h2load"
fi
export N1="${N1:-2000}" N2="${N2:-10000}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(haproxy switchyard)
PATH="$keep/bin:$PATH" "$script" "${targets[@]}" >"$keep/script.out"
ll_head=""
[ -z "${LL:-}" ] || ll_head="$(printf ' %7s %7s %7s' LLi LLr LLw)"
printf '%-12s %9s %7s %7s %7s %7s %7s%s\n' target Ir I1mr D1mr D1mw Bcm Bim "$ll_head"
for t in "${targets[@]}"; do
  a="$keep/cg/$t.$N1.cg" b="$keep/cg/$t.$N2.cg"
  if [ ! -s "$a" ] || [ ! -s "$b" ]; then echo "$t no figure"; continue; fi
  python3 - "$t" "$a" "$b" "$N1" "$N2" "${LL:-}" <<'PY'
import sys
t, a, b, n1, n2, want_ll = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
def read(path):
    events = summary = None
    for line in open(path, errors="replace"):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(x) for x in line.split()[1:]]
    return dict(zip(events, summary))
x, y = read(a), read(b)
per = {k: (y[k] - x[k]) / (n2 - n1) for k in y}
ll = "".join(f" {per[k]:7.1f}" for k in ("ILmr", "DLmr", "DLmw") if want_ll and k in per)
print(f"{t:<12} {per['Ir']:9.0f} {per['I1mr']:7.0f} {per['D1mr']:7.0f} {per['D1mw']:7.0f} {per['Bcm']:7.0f} {per['Bim']:7.0f}{ll}")
PY
done
