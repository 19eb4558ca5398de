#!/usr/bin/env bash
# Reload soak: wrk at 64 connections for 30 s through a release build while
# the config file is rewritten every 0.5 s (weights changed, a route added
# and removed, three invalid versions, one delete-and-restore). Reloads come
# from the file watcher alone. Passes only with 0 non-2xx responses and 0
# socket errors, and when the status endpoint counts the reloads.
# Usage: scripts/reload-soak.sh [seconds]   (default 30)
# SWITCHYARD_BIN=path uses that binary instead of building the release one.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION="${1:-30}"

if ! command -v wrk >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi

if [ -n "${SWITCHYARD_BIN:-}" ]; then
    BIN="$SWITCHYARD_BIN"
else
    cargo build --release --quiet
    BIN="$PWD/target/release/switchyard"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

WEB=$(free_port); ADMIN=$(free_port); A=$(free_port); B=$(free_port); C=$(free_port)
for backend in "a:$A" "b:$B" "c:$C"; do
    "$BIN" demo-backend --name "${backend%%:*}" --listen "127.0.0.1:${backend##*:}" 2>/dev/null &
    PIDS+=($!)
done

CONF="$WORK/conf/switchyard.toml"
mkdir -p "$WORK/conf"

# config WEIGHT_A WEIGHT_B WITH_ROUTE
config() {
    cat <<TOML
[global]
access_log = "off"
grace = "1s"

[admin]
listen = "127.0.0.1:$ADMIN"

[[frontend]]
name = "web"
listen = "127.0.0.1:$WEB"
default_backend = "app"
TOML
    if [ "$3" = "yes" ]; then
        printf '  [[frontend.route]]\n  path_prefix = "/extra"\n  backend = "other"\n'
    fi
    cat <<TOML

[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "127.0.0.1:$A"
  weight = $1
  [[backend.server]]
  name = "b"
  address = "127.0.0.1:$B"
  weight = $2

[[backend]]
name = "other"
  [[backend.server]]
  name = "c"
  address = "127.0.0.1:$C"
TOML
}

config 1 1 no > "$CONF"
export SWITCHYARD_ADMIN_TOKEN="soak-$$-$RANDOM"
RUST_LOG=warn "$BIN" run -c "$CONF" --state-dir "$WORK/state" 2>"$WORK/switchyard.log" &
PIDS+=($!)

for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$WEB/" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$WEB/" >/dev/null

status() {
    curl -fs -H "Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN" "http://127.0.0.1:$ADMIN/api/reload/status"
}

wrk -t2 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$WEB/" >"$WORK/wrk.txt" &
WRK=$!
PIDS+=($WRK)

# Rewrite the file every 0.5 s while wrk runs.
ROUNDS=$(( DURATION * 2 - 2 ))
INVALID=0; DELETED=0; ROUTES=0
for i in $(seq 1 "$ROUNDS"); do
    sleep 0.5
    case $i in
        10|25|40)   # three invalid versions: a bad weight, a bad key, bad TOML
            case $INVALID in
                0) config 300 1 no > "$CONF" ;;
                1) config 1 1 no | sed 's/^grace = /grace_period = /' > "$CONF" ;;
                2) echo '[[frontend' > "$CONF" ;;
            esac
            INVALID=$((INVALID + 1)) ;;
        30)         # delete, then restore
            rm "$CONF"; sleep 0.25; config 2 3 no > "$CONF"; DELETED=1 ;;
        *)
            route=no
            if [ $(( i % 4 )) -lt 2 ]; then route=yes; ROUTES=$((ROUTES + 1)); fi
            config $(( i % 5 + 1 )) $(( (i * 7) % 5 )) "$route" > "$CONF" ;;
    esac
done
wait "$WRK"
sleep 0.5
STATUS=$(status)

cat "$WORK/wrk.txt"
echo "reload status: $STATUS"
echo "rewrites: $ROUNDS (invalid: $INVALID, delete-and-restore: $DELETED, with the /extra route: $ROUTES)"

fail=0
if grep -q "Non-2xx or 3xx responses" "$WORK/wrk.txt"; then
    echo "FAIL: non-2xx responses"; fail=1
fi
if grep -q "Socket errors" "$WORK/wrk.txt"; then
    echo "FAIL: socket errors"; fail=1
fi
ok=$(echo "$STATUS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads_ok"])')
failed=$(echo "$STATUS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads_failed"])')
if [ "$failed" -lt 3 ] || [ "$ok" -lt 10 ]; then
    echo "FAIL: expected at least 10 good and 3 failed reloads, got $ok and $failed"; fail=1
fi
if [ "$fail" -ne 0 ]; then
    echo "--- switchyard log"; tail -50 "$WORK/switchyard.log"
    exit 1
fi
echo "PASS: 0 non-2xx, 0 socket errors, $ok reloads applied, $failed invalid versions refused"
