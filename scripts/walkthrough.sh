#!/usr/bin/env bash
# The README's migration walkthrough, end to end: starts `switchyard demo`
# on free ports and runs each step with one curl, asserting what it shows:
# round robin, /api/users on the new service, the /api/orders split at 90/10,
# 50/50 and 0/100, DRAIN then MAINT of the old server, and a roll back with
# READY. Stops the demo on exit, failure included.
#
# Usage: scripts/walkthrough.sh   (SWITCHYARD=path/to/switchyard to choose the binary)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${SWITCHYARD:-target/debug/switchyard}
WORK=$(mktemp -d)
DEMO=""
cleanup() {
    if [ -n "$DEMO" ]; then
        kill "$DEMO" 2>/dev/null || true
        wait "$DEMO" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "walkthrough: FAILED: $*" >&2
    echo "--- demo log" >&2
    cat "$WORK/demo.log" >&2 || true
    exit 1
}

# The admin token comes from the state directory, as the README says.
unset SWITCHYARD_ADMIN_TOKEN
"$BIN" demo --listen 127.0.0.1:0 --admin 127.0.0.1:0 --backends 127.0.0.1:0,127.0.0.1:0 \
    --state-dir "$WORK/state" 2>"$WORK/demo.log" >/dev/null &
DEMO=$!

# Wait (at most 10 s) for the demo to say where it listens.
for _ in $(seq 100); do
    grep -q '^demo: stats page' "$WORK/demo.log" 2>/dev/null && break
    kill -0 "$DEMO" 2>/dev/null || fail "demo exited"
    sleep 0.1
done
PROXY=$(sed -n 's|^demo: frontend web on \(http://[^/]*\)/.*|\1|p' "$WORK/demo.log")
ADMIN=$(sed -n 's|^demo: admin server on \(http://[^/]*\)/.*|\1|p' "$WORK/demo.log")
[ -n "$PROXY" ] && [ -n "$ADMIN" ] || fail "demo did not start"
TOKEN=$(cat "$WORK/state/admin-token")
echo "proxy $PROXY, admin $ADMIN"

# PUT a JSON body to the admin API, as the README shows.
admin_put() {
    curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -H 'X-Switchyard-Admin: 1' -d "$2" "$ADMIN$1"
}

# Counts lines of $1 equal to $2.
count() { grep -c -x "$2" <<<"$1" || true; }

# Ten requests for /api/orders in one curl; who answered each.
orders() { curl -fsS "$PROXY/api/orders?i=[1-10]" | grep '^Hello from'; }

expect_orders() {
    local got
    got=$(orders)
    [ "$(count "$got" 'Hello from monolith')" = "$1" ] && [ "$(count "$got" 'Hello from users')" = "$2" ] ||
        fail "/api/orders: expected $1 monolith and $2 users, got: $got"
    echo "ok: /api/orders answered $1 times by the monolith, $2 times by users"
}

step() { echo; echo "== $*"; }

step "1. Switchyard in front: / alternates between the old stack and the new one"
out=$(curl -fsS "$PROXY/" "$PROXY/" | grep '^Hello from')
[ "$(count "$out" 'Hello from monolith')" = 1 ] && [ "$(count "$out" 'Hello from users')" = 1 ] ||
    fail "round robin: $out"
echo "ok: round robin"

step "2. /api/users goes to the new service"
out=$(curl -fsS "$PROXY/api/users")
grep -q '^Hello from users' <<<"$out" || fail "/api/users: $out"
echo "ok: /api/users answered by users"
expect_orders 10 0

step "3a. Shift /api/orders: 90/10"
out=$(admin_put /api/frontends/web/routes/1/split '{"monolith": 90, "users": 10}')
grep -q '"split":"monolith=90 users=10"' <<<"$out" || fail "split 90/10: $out"
expect_orders 9 1

step "3b. 50/50"
out=$(admin_put /api/frontends/web/routes/1/split '{"monolith": 50, "users": 50}')
grep -q '"split":"monolith=50 users=50"' <<<"$out" || fail "split 50/50: $out"
expect_orders 5 5

step "3c. 0/100: all on the new service"
out=$(admin_put /api/frontends/web/routes/1/split '{"monolith": 0, "users": 100}')
grep -q '"split":"monolith=0 users=100"' <<<"$out" || fail "split 0/100: $out"
expect_orders 0 10

step "4a. DRAIN the old server: no new requests reach it"
out=$(admin_put /api/backends/app/servers/legacy/state '{"state": "drain", "wait": "5s"}')
grep -q '"state":"drain"' <<<"$out" && grep -q '"result":"drained"' <<<"$out" || fail "drain: $out"
out=$(curl -fsS "$PROXY/" "$PROXY/" | grep '^Hello from')
[ "$(count "$out" 'Hello from users')" = 2 ] || fail "after DRAIN: $out"
echo "ok: drained; / answered by the new stack only"

step "4b. MAINT: the old server is out entirely"
out=$(admin_put /api/backends/app/servers/legacy/state '{"state": "maint"}')
grep -q '"state":"maint"' <<<"$out" || fail "maint: $out"
out=$(curl -fsS "$PROXY/" "$PROXY/" | grep '^Hello from')
[ "$(count "$out" 'Hello from users')" = 2 ] || fail "after MAINT: $out"
echo "ok: in MAINT; / answered by the new stack only"

step "5. Roll back: READY brings the old server back"
out=$(admin_put /api/backends/app/servers/legacy/state '{"state": "ready"}')
grep -q '"state":"ready"' <<<"$out" || fail "ready: $out"
# Leaving MAINT, a server takes traffic again once a check has passed, within
# one check interval (2 s in the demo): retry the same curl for 10 s at most.
for _ in $(seq 100); do
    out=$(curl -fsS "$PROXY/" "$PROXY/" | grep '^Hello from')
    [ "$(count "$out" 'Hello from monolith')" = 1 ] && [ "$(count "$out" 'Hello from users')" = 1 ] && break
    sleep 0.1
done
[ "$(count "$out" 'Hello from monolith')" = 1 ] && [ "$(count "$out" 'Hello from users')" = 1 ] ||
    fail "after READY: $out"
echo "ok: round robin again"

echo
echo "walkthrough: all steps passed"
