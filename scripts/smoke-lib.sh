# Shared by scripts/compose-smoke.sh and scripts/replicas-smoke.sh, which
# source it after setting `smoke` (their name, for messages) and `root` (the
# checkout) and defining `compose` (the compose command for their stack):
# the Docker checks, the teardown trap, the step helpers and the image that
# packs the binary FROM scratch without pulling anything.

# Skips on SWITCHYARD_SKIP_DOCKER=1 (never in CI), finds the compose tool
# (`compose_tool`) and checks for the commands in "$@".
smoke_start() {
    if [ "${SWITCHYARD_SKIP_DOCKER:-}" = 1 ]; then
        if [ "${CI:-}" = true ]; then
            echo "$smoke: SWITCHYARD_SKIP_DOCKER is ignored in CI" >&2
        else
            echo "$smoke: skipped (SWITCHYARD_SKIP_DOCKER=1)"
            exit 0
        fi
    fi
    if docker compose version >/dev/null 2>&1; then
        compose_tool=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose_tool=(docker-compose)
    else
        echo "$smoke: neither 'docker compose' nor 'docker-compose' is installed" >&2
        exit 1
    fi
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$smoke: $tool is missing" >&2; exit 1; }
    done
    run_id="$(date +%s)-$$"
    work="$(mktemp -d)"
    log="$work/log"
    step="starting"
    passed=0
    token="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    trap cleanup EXIT
}

cleanup() {
    local rc=$?
    trap - EXIT
    # Neither an error nor a closed output pipe may stop the teardown.
    set +e
    trap '' PIPE
    if [ "$rc" -ne 0 ]; then
        echo "$smoke: FAILED at: $step" >&2
        if [ -s "$log" ]; then
            echo "--- last output ---" >&2
            tail -n 40 "$log" >&2
        fi
        if [ -f "$work/override.yaml" ]; then
            echo "--- stack logs ---" >&2
            compose logs --no-color --tail 40 >&2 2>&1 || true
        fi
    fi
    if [ -f "$work/override.yaml" ]; then
        compose down -v --rmi local --remove-orphans -t 5 >>"$log" 2>&1 || true
    fi
    docker image rm -f "${image:-}" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$rc"
}

fail() {
    echo "$smoke: $step: $*" >&2
    exit 1
}

ok() {
    passed=$((passed + 1))
}

# Runs a command with its output in the log; on failure the trap shows it.
quietly() {
    "$@" >>"$log" 2>&1
}

# Polls `$@` every 200 ms until it succeeds, for at most $timeout seconds.
eventually() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "still not true after ${timeout}s: $*"
        fi
        sleep 0.2
    done
}

# Builds the image `$image`: the release binary, built as users get it by
# scripts/build-release.sh (or SWITCHYARD_SMOKE_BINARY,
# a binary built already: a developer's shortcut), stripped, with the shared
# libraries it links, FROM scratch, with the real Dockerfile's runtime
# instructions; /etc/switchyard holds the directory $1 when given.
pack_image() {
    local config=${1:-}
    step="building the release binary"
    if [ -n "${SWITCHYARD_SMOKE_BINARY:-}" ]; then
        binary="$SWITCHYARD_SMOKE_BINARY"
    else
        quietly "$root/scripts/build-release.sh"
        binary="$root/target/release/switchyard"
    fi

    step="packing the image"
    local ctx="$work/context"
    local rootfs="$ctx/rootfs"
    mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/var/lib" "$rootfs/tmp" "$ctx/state"
    strip -o "$rootfs/usr/local/bin/switchyard" "$binary"
    # The shared libraries and the dynamic loader, at the paths the binary names.
    local libraries lib
    libraries="$(ldd "$binary" | grep -o '/[^ ]*' || true)"
    [ -n "$libraries" ] || fail "ldd found no libraries in $binary"
    for lib in $libraries; do
        mkdir -p "$rootfs$(dirname "$lib")"
        cp -L "$lib" "$rootfs$lib"
    done
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nswitchyard:x:10001:10001:switchyard:/var/lib/switchyard:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nswitchyard:x:10001:\n' >"$rootfs/etc/group"
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    if [ -n "$config" ]; then
        cp -r "$config" "$ctx/config"
    else
        mkdir -p "$ctx/config"
    fi
    # The real Dockerfile's runtime instructions, from its last stage.
    local runtime
    runtime="$(awk '/^FROM /{ buf = "" } /^(USER|WORKDIR|EXPOSE|HEALTHCHECK|ENTRYPOINT|CMD|STOPSIGNAL) /{ buf = buf $0 "\n" } END { printf "%s", buf }' "$root/Dockerfile")"
    grep -q '^HEALTHCHECK ' <<<"$runtime" || fail "the Dockerfile's runtime stage has no HEALTHCHECK"
    grep -q '^USER ' <<<"$runtime" || fail "the Dockerfile's runtime stage has no USER"
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/switchyard/
COPY config /etc/switchyard
ENV PATH=/usr/local/bin
$runtime
DOCKERFILE
    quietly docker build -q -t "$image" "$ctx"
    ok
}
