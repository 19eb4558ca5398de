#!/usr/bin/env bash
# Proves the top-level docker-compose.yaml on this machine's Docker Engine,
# without pulling anything (no registry is reachable here):
#
#  1. builds the release binary on the host and packs it into an image FROM
#     scratch with the shared libraries it links, /etc/passwd for its non-root
#     user and the runtime instructions of the real Dockerfile (USER, WORKDIR,
#     EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD);
#  2. runs the real docker-compose.yaml, with an override that only swaps the
#     image names (and `up --no-build`, so its `build:` is never used), under a
#     project name unique to this run, with a copy of config/ as the mounted
#     config directory;
#  3. asserts what the README promises: round robin, /api/users routed, MAINT
#     and DRAIN from the admin API, a MAINT kept across a restart, a reload by
#     the file watcher after an edit of the mounted config and one on SIGHUP,
#     `--scale users=3` reaching all three instances (the users backend
#     discovers its servers from Docker's DNS) and back to 1 with no failed
#     request;
#  4. tears everything down, even on failure.
#
# Quiet on success (one closing line); on failure it says which step failed
# and prints the stack's logs. SWITCHYARD_SKIP_DOCKER=1 skips it on a machine
# without Docker (not in CI); SWITCHYARD_SMOKE_BINARY=path packs that binary
# instead of building the release one. Uses `docker compose` when the plugin
# exists, else `docker-compose`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

smoke=compose-smoke
# shellcheck source=scripts/smoke-lib.sh
source "$root/scripts/smoke-lib.sh"
smoke_start curl jq ldd
project="switchyard-smoke-$run_id"
image="switchyard-smoke:$run_id"
port=0
admin_port=0

compose() {
    SWITCHYARD_ADMIN_TOKEN="$token" SWITCHYARD_PORT="$port" SWITCHYARD_ADMIN_PORT="$admin_port" \
        "${compose_tool[@]}" -p "$project" --project-directory "$work/project" \
        -f "$root/docker-compose.yaml" -f "$work/override.yaml" "$@"
}

# A free TCP port on the host's loopback.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# GET $1 through the proxy; sets status, served (X-Served-By) and instance
# (X-Instance). A failed connection leaves status=000.
hit() {
    local headers
    headers="$(curl -s -m 5 -o /dev/null -D - "http://127.0.0.1:$port$1" | tr -d '\r' || true)"
    status="$(awk 'NR == 1 { print $2 }' <<<"$headers")"
    status="${status:-000}"
    served="$(awk -F': ' 'tolower($1) == "x-served-by" { print $2 }' <<<"$headers")"
    instance="$(awk -F': ' 'tolower($1) == "x-instance" { print $2 }' <<<"$headers")"
}

# The X-Served-By of $2 requests to $1, space-separated; fails on a non-200.
serve_sequence() {
    local path=$1 n=$2 out=() i
    for ((i = 0; i < n; i++)); do
        hit "$path"
        [ "$status" = 200 ] || fail "GET $path answered $status"
        out+=("$served")
    done
    echo "${out[*]}"
}

# Calls the admin API: method, path, optional JSON body. Prints the answer.
# The Host header names the admin's own port: it refuses other Hosts (421).
admin() {
    local method=$1 path=$2 body=${3:-}
    local args=(-sS -f -m 70 -X "$method" -H "Authorization: Bearer $token" -H "Host: 127.0.0.1:8001")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' -H 'X-Switchyard-Admin: 1' -d "$body")
    fi
    curl "${args[@]}" "http://127.0.0.1:$admin_port$path"
}

set_state() {
    admin PUT "/api/backends/$1/servers/$2/state" "$3"
}

server_status_is() {
    [ "$(admin GET "/api/backends/$1/servers/$2" | jq -r .status)" = "$3" ]
}

# True when the next two requests to / are answered by both app servers.
alternates() {
    local seq
    seq="$(serve_sequence / 2)"
    [ "$seq" = "monolith users" ] || [ "$seq" = "users monolith" ]
}

# Strict alternation over $1 requests to /.
assert_round_robin() {
    local seq prev="" s
    seq="$(serve_sequence / "$1")"
    for s in $seq; do
        [ "$s" != "$prev" ] || fail "round robin broken: $seq"
        prev=$s
    done
    [[ " $seq " == *" monolith "* && " $seq " == *" users "* ]] || fail "not both servers: $seq"
}

assert_only() {
    local path=$1 expected=$2 seq s
    seq="$(serve_sequence "$path" 6)"
    for s in $seq; do
        [ "$s" = "$expected" ] || fail "GET $path: expected only $expected, got: $seq"
    done
}

service_health() {
    docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$1")"
}

is_healthy() {
    [ "$(service_health "$1")" = healthy ]
}

# --- 1. the image, without pulling ------------------------------------------
pack_image "$root/config"

# --- 2. the stack -------------------------------------------------------------
step="starting the stack"
mkdir -p "$work/project"
cp -r "$root/config" "$work/project/config"
cat >"$work/override.yaml" <<EOF
# Only the image names differ from docker-compose.yaml.
services:
  switchyard:
    image: $image
  monolith:
    image: $image
  users:
    image: $image
EOF
port="$(free_port)"
admin_port="$(free_port)"
[ "$port" != "$admin_port" ] || admin_port="$(free_port)"
quietly compose up -d --no-build
eventually 60 curl -sf -m 2 "http://127.0.0.1:$admin_port/readyz"
for server in legacy new-stack; do
    eventually 30 server_status_is app "$server" UP
done
eventually 30 server_status_is users users-1 UP
ok

step="the image's non-root user and HEALTHCHECK (switchyard healthcheck on /healthz)"
proxy_container="$(compose ps -q switchyard)"
[ "$(docker inspect -f '{{.Config.User}}' "$proxy_container")" = 10001:10001 ] ||
    fail "the proxy does not run as 10001:10001"
docker inspect -f '{{json .Config.Healthcheck.Test}}' "$proxy_container" | grep -q '"healthcheck"' ||
    fail "the image's HEALTHCHECK does not run switchyard healthcheck"
eventually 60 is_healthy switchyard
eventually 60 is_healthy users
ok

# --- 3. what the README promises ---------------------------------------------
step="round robin on /"
assert_round_robin 8
ok

step="/api/users routed to the users service"
assert_only /api/users users
assert_only /api/users/7 users
ok

step="MAINT from the admin API"
set_state app legacy '{"state":"maint"}' >/dev/null
assert_only / users
set_state app legacy '{"state":"ready"}' >/dev/null
# Leaving MAINT, the server takes traffic again once a check passes.
eventually 15 alternates
ok

step="DRAIN from the admin API, waiting for in-flight requests"
answer="$(set_state app new-stack '{"state":"drain","wait":"30s"}')"
[ "$(jq -r .result <<<"$answer")" = drained ] || fail "drain answered: $answer"
assert_only / monolith
set_state app new-stack '{"state":"ready"}' >/dev/null
eventually 15 alternates
assert_round_robin 6
ok

step="admin state kept on the state volume across a restart"
set_state app legacy '{"state":"maint"}' >/dev/null
# SIGTERM: the proxy finishes in-flight requests, saves its state file and
# exits; the same container starts again with the same volume.
quietly compose restart -t 15 switchyard
eventually 60 curl -sf -m 2 "http://127.0.0.1:$admin_port/readyz"
[ "$(admin GET /api/backends/app/servers/legacy | jq -r .admin_state)" = maint ] ||
    fail "legacy is not in MAINT after the restart"
assert_only / users
set_state app legacy '{"state":"ready"}' >/dev/null
eventually 15 alternates
ok

step="reload by the file watcher after an edit of the mounted config"
config="$work/project/config/docker-compose.toml"
last_reload_is() {
    admin GET /api/reload/status |
        jq -e --arg cause "$1" --argjson after "$2" '.last.cause == $cause and .last.result == "ok" and .generation > $after'
}
generation="$(admin GET /api/reload/status | jq .generation)"
# An edit on the host of the bind-mounted directory, saved by rename (sed -i).
sed -i 's|path_prefix = "/api/users"|path_prefix = "/api/accounts"|' "$config"
grep -q '"/api/accounts"' "$config" || fail "the edit did not apply"
eventually 15 last_reload_is file "$generation"
assert_only /api/accounts users
assert_round_robin 4 # /api/users is no longer routed: it alternates like /
ok

step="reload on SIGHUP (docker compose kill -s HUP)"
generation="$(admin GET /api/reload/status | jq .generation)"
quietly compose kill -s HUP switchyard
eventually 15 last_reload_is signal "$generation"
assert_only /api/accounts users
ok

# --- 4. scaled services ---------------------------------------------------------
step="--scale users=3"
quietly compose up -d --no-build --scale users=3
[ "$(compose ps -q users | wc -l)" -eq 3 ] || fail "expected 3 users containers"
# The users backend discovers its servers from Docker's DNS (`discover =
# { dns = "users:8080", every = "2s" }`): within a few lookups each of the
# three containers is a server of its own, and round robin reaches them all.
declare -A seen=()
three_instances_reached() {
    local i
    for ((i = 0; i < 12; i++)); do
        hit /api/accounts
        [ "$status" = 200 ] || fail "GET /api/accounts answered $status while scaled"
        seen[${instance:-unnamed}]=1
    done
    [ "${#seen[@]}" -eq 3 ]
}
eventually 30 three_instances_reached
servers="$(admin GET /api/stats | jq -r '.backends[] | select(.name == "users") | .servers | length')"
[ "$servers" -eq 3 ] || fail "expected 3 servers in the users backend, got $servers"
ok

step="--scale users=1"
# Requests flow while compose removes two instances; their outcome is
# counted.
(
    failures=0
    while [ ! -e "$work/stop-load" ]; do
        hit /api/accounts
        [ "$status" = 200 ] || failures=$((failures + 1))
    done
    echo "$failures" >"$work/load-failures"
) &
load=$!
quietly compose up -d --no-build --scale users=1
touch "$work/stop-load"
wait "$load"
[ "$(compose ps -q users | wc -l)" -eq 1 ] || fail "expected 1 users container"
# The removed instances' servers leave the backend at the next lookups;
# meanwhile a refused or unanswered connection is retried on another server,
# and requests in flight finish: no request failed.
[ "$(cat "$work/load-failures")" -eq 0 ] || fail "$(cat "$work/load-failures") requests failed while scaling down"
servers_left() {
    [ "$(admin GET /api/stats | jq -r '.backends[] | select(.name == "users") | .servers | length')" -eq 1 ]
}
eventually 30 servers_left
users_answers() {
    hit /api/accounts
    [ "$status" = 200 ] && [ "$served" = users ]
}
eventually 60 users_answers
ok

step="done"
echo "compose-smoke: $passed passed, 0 failed"
