#!/usr/bin/env bash
# Builds the release binary, target/release/switchyard, with profile-guided
# optimisation (PGO): an instrumented build serves the traffic of
# examples/pgo_workload.rs (HTTP/1.1 keep-alive and new connections, large
# bodies, POSTs, HTTP/2 over TLS and h2c), and the final build lays out and
# inlines the code by what that traffic ran. The hot path then fits the
# CPU's instruction cache: callgrind counts about a fifth fewer instructions
# and half the instruction-cache misses per request (BENCHMARKS.md).
#
#   scripts/build-release.sh             (the Dockerfile, the Debian package
#                                         and the smoke tests use it)
#   SWITCHYARD_PGO=off scripts/build-release.sh   (a plain `cargo build --release`)
#
# Needs llvm-profdata from the toolchain's llvm-tools component: installed
# with rustup when missing. The instrumented build and its profile live in
# target/pgo/; a profile newer than the instrumented binary is used again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${SWITCHYARD_PGO:-on}" = off ]; then
    exec cargo build --release --locked --bin switchyard
fi

sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    command -v rustup >/dev/null || {
        echo "build-release: llvm-profdata is missing and rustup is not here to install llvm-tools;" >&2
        echo "build-release: install the toolchain's llvm-tools, or build without PGO: SWITCHYARD_PGO=off $0" >&2
        exit 1
    }
    rustup component add llvm-tools >&2
fi

pgo="$root/target/pgo"
raw="$pgo/raw"
merged="$pgo/switchyard.profdata"
instrumented="$pgo/target/release/switchyard"
workload="$root/target/debug/examples/pgo_workload"

# The instrumented binary is built exactly as the final one (the same
# crates and features, so the same symbols): the workload, an example,
# pulls in the dev-dependencies and their features, so it is built apart,
# without instrumentation and unoptimised.
echo "build-release: instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$raw" \
    cargo build --release --locked --bin switchyard --target-dir "$pgo/target"
cargo build --locked --example pgo_workload

if [ ! -s "$merged" ] || [ "$instrumented" -nt "$merged" ]; then
    echo "build-release: training on examples/pgo_workload.rs" >&2
    rm -rf "$raw"
    mkdir -p "$raw"
    "$workload" "$instrumented" "$raw"
    ls "$raw"/*.profraw >/dev/null 2>&1 || { echo "build-release: the training wrote no profile" >&2; exit 1; }
    "$profdata" merge -o "$merged.tmp" "$raw"/*.profraw
    mv "$merged.tmp" "$merged"
fi

echo "build-release: optimised build" >&2
RUSTFLAGS="-Cprofile-use=$merged" cargo build --release --locked --bin switchyard
echo "build-release: $root/target/release/switchyard" >&2
