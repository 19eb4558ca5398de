#!/usr/bin/env bash
# Proves replicas sharing their operator state with containers on a compose
# network, on this machine's Docker Engine, without pulling anything:
#
#  1. packs the release binary into an image FROM scratch, with
#     scripts/smoke-lib.sh like scripts/compose-smoke.sh (the real Dockerfile's runtime
#     instructions, the shared libraries the binary links);
#  2. runs deploy/replicas/docker-compose.yaml, with an override that only
#     swaps the image names, scaled to three Switchyard replicas whose
#     `peers = "switchyard:8001"` Docker's DNS resolves to all three;
#  3. asserts, through the containers' published ports:
#     - every replica reports ready and in sync with two peers;
#     - MAINT set on replica 1 stops traffic to that server through all
#       three within 1 s;
#     - replica 2 is stopped, a change is made, replica 2 starts again: it
#       answers /readyz 503 (or not at all) until it has pulled, and when it
#       reports ready it already serves the current state;
#     - two conflicting changes made at once on two replicas end in the same
#       state (and the same state digest) everywhere;
#  4. tears everything down, even on failure.
#
# Quiet on success (one closing line); on failure it says which step failed
# and prints the stack's logs. SWITCHYARD_SKIP_DOCKER=1 skips it on a machine
# without Docker (not in CI); SWITCHYARD_SMOKE_BINARY=path packs that binary
# instead of building the release one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

smoke=replicas-smoke
# shellcheck source=scripts/smoke-lib.sh
source "$root/scripts/smoke-lib.sh"
smoke_start curl jq ldd python3
project="switchyard-replicas-$run_id"
image="switchyard-replicas:$run_id"

compose() {
    SWITCHYARD_ADMIN_TOKEN="$token" \
        "${compose_tool[@]}" -p "$project" --project-directory "$root/deploy/replicas" \
        -f "$root/deploy/replicas/docker-compose.yaml" -f "$work/override.yaml" "$@"
}

# The host port published for container $1's port $2.
published() {
    docker port "$1" "$2" | awk -F: 'NR == 1 { print $NF }'
}

# Replica $1 (1-3): its container id, and its admin and proxy ports, read
# once by `learn_ports` (a restarted container gets new host ports).
container() {
    sed -n "${1}p" "$work/containers"
}
declare -A admin_ports=() proxy_ports=()
learn_ports() {
    admin_ports[$1]="$(published "$(container "$1")" 8001)"
    proxy_ports[$1]="$(published "$(container "$1")" 8000)"
    [ -n "${admin_ports[$1]}" ] && [ -n "${proxy_ports[$1]}" ]
}
admin_port() {
    echo "${admin_ports[$1]:-1}"
}
proxy_port() {
    echo "${proxy_ports[$1]:-1}"
}

# Calls replica $1's admin API: method, path, optional JSON body.
admin() {
    local replica=$1 method=$2 path=$3 body=${4:-}
    local args=(-sS -f -m 10 -X "$method" -H "Authorization: Bearer $token" -H "Host: 127.0.0.1:8001")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' -d "$body")
    fi
    curl "${args[@]}" "http://127.0.0.1:$(admin_port "$replica")$path"
}

set_state() {
    admin "$1" PUT "/api/backends/app/servers/$2/state" "{\"state\":\"$3\"}" >/dev/null
}

state_of() {
    admin "$1" GET "/api/backends/app/servers/$2" | jq -r .admin_state
}

in_sync_with_two() {
    admin "$1" GET /api/stats |
        jq -e '.peers.ready and (.peers.peers | length == 2) and all(.peers.peers[]; .in_sync)'
}

# Who served $2 requests through replica $1, space-separated.
served_through() {
    local port out=() i served
    port="$(proxy_port "$1")"
    for ((i = 0; i < $2; i++)); do
        served="$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$port/" | tr -d '\r' |
            awk -F': ' 'tolower($1) == "x-served-by" { print $2 }')"
        out+=("${served:-none}")
    done
    echo "${out[*]}"
}

assert_only_through() {
    local seq s
    seq="$(served_through "$1" 6)"
    for s in $seq; do
        [ "$s" = "$2" ] || fail "replica $1: expected only $2, got: $seq"
    done
}

# --- 1. the image, without pulling ------------------------------------------
pack_image

# --- 2. three replicas ----------------------------------------------------------
step="starting three replicas"
cat >"$work/override.yaml" <<EOF
# Only the image names differ from deploy/replicas/docker-compose.yaml.
services:
  switchyard:
    image: $image
  a:
    image: $image
  b:
    image: $image
EOF
quietly compose up -d --no-build --scale switchyard=3
compose ps -q switchyard | sort >"$work/containers"
[ "$(wc -l <"$work/containers")" -eq 3 ] || fail "expected 3 switchyard containers"
for r in 1 2 3; do
    learn_ports "$r" || fail "replica $r publishes no ports"
done
for r in 1 2 3; do
    eventually 60 curl -sf -m 2 "http://127.0.0.1:$(admin_port "$r")/readyz"
done
ok

step="every replica in sync with the two others (peers = \"switchyard:8001\")"
for r in 1 2 3; do
    eventually 30 in_sync_with_two "$r"
done
ok

# --- 3. what the replicas promise ---------------------------------------------
step="MAINT on replica 1 stops traffic to a through all three within 1 s"
# One process sets MAINT on replica 1 and polls the three admin APIs, so that
# the deadline measures the replication, not the start-up of curl and jq.
elapsed="$(python3 - "$token" "$(admin_port 1)" "$(admin_port 2)" "$(admin_port 3)" <<'PY'
import json, sys, time, urllib.request
token, ports = sys.argv[1], sys.argv[2:]
def call(port, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Host": "127.0.0.1:8001",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)
started = time.monotonic()
call(ports[0], "PUT", "/api/backends/app/servers/a/state", {"state": "maint"})
for i, port in enumerate(ports, 1):
    while call(port, "GET", "/api/backends/app/servers/a")["admin_state"] != "maint":
        if time.monotonic() - started >= 1.0:
            sys.exit(f"replica {i} still not MAINT after 1 s")
        time.sleep(0.005)
print(round((time.monotonic() - started) * 1000))
PY
)" || fail "MAINT did not reach every replica within 1 s"
for r in 1 2 3; do
    assert_only_through "$r" b
done
ok

step="a restarted replica serves the current state before it reports ready"
quietly docker stop -t 15 "$(container 2)"
set_state 1 a ready
set_state 3 b maint
state_is() {
    [ "$(state_of "$1" "$2")" = "$3" ]
}
eventually 10 state_is 3 a ready
eventually 10 state_is 1 b maint
quietly docker start "$(container 2)"
eventually 30 learn_ports 2
seen=""
deadline=$((SECONDS + 60))
while true; do
    code="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(admin_port 2)/readyz" || true)"
    [ "$code" = 200 ] && break
    [ "$code" = 503 ] || [ "$code" = 000 ] || fail "replica 2 /readyz answered $code"
    seen="$seen $code"
    [ "$SECONDS" -lt "$deadline" ] || fail "replica 2 never became ready"
    sleep 0.05
done
# Ready: the state pulled is already the one served.
[ "$(state_of 2 b)" = maint ] || fail "replica 2 ready with b $(state_of 2 b), expected maint"
[ "$(state_of 2 a)" = ready ] || fail "replica 2 ready with a $(state_of 2 a), expected ready"
assert_only_through 2 a
before_ready="$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
eventually 30 in_sync_with_two 2
ok

step="conflicting changes on replicas 1 and 3 end in the same state everywhere"
for round in 1 2 3; do
    set_state 1 a maint &
    set_state 3 a drain &
    wait
    set_state 3 b ready &
    set_state 1 b drain &
    wait
done
same_everywhere() {
    local states="" digests="" r
    for r in 1 2 3; do
        states="$states $(state_of "$r" a)/$(state_of "$r" b)"
        digests="$digests $(admin "$r" GET /api/stats | jq -r .peers.digest)"
    done
    [ "$(tr ' ' '\n' <<<"$states" | sed '/^$/d' | sort -u | wc -l)" -eq 1 ] &&
        [ "$(tr ' ' '\n' <<<"$digests" | sed '/^$/d' | sort -u | wc -l)" -eq 1 ]
}
eventually 10 same_everywhere
for r in 1 2 3; do
    eventually 10 in_sync_with_two "$r"
done
ok

step="done"
echo "replicas-smoke: $passed passed, 0 failed (MAINT on all three in ${elapsed} ms; restarted replica's /readyz before ready: ${before_ready:-none polled})"
