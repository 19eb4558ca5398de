#!/usr/bin/env bash
# Runs the Debian package's systemd unit for real, sandbox and all: a Debian
# bookworm root file system (debootstrap from Debian's archive, kept under
# target/deploy-tools/) boots systemd in a Docker container, the .deb built by
# `cargo deb` is installed with dpkg, and the script asserts that
#   - `systemctl start` runs `check`, then the proxy as the `switchyard` user,
#     which balances round robin over two demo backends (the package's config);
#   - an edit of /etc/switchyard/switchyard.toml is reloaded by the file
#     watcher, and `systemctl reload` (ExecReload, SIGHUP) reloads too;
#   - `systemctl stop` ends it cleanly (exit 0, result success).
# Everything is removed afterwards, even on failure. Needs root and Docker;
# SWITCHYARD_SKIP_DOCKER=1 skips it outside CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${SWITCHYARD_SKIP_DOCKER:-}" = 1 ]; then
    if [ "${CI:-}" = true ]; then
        echo "deb-systemd-smoke: SWITCHYARD_SKIP_DOCKER is ignored in CI" >&2
    else
        echo "deb-systemd-smoke: skipped (SWITCHYARD_SKIP_DOCKER=1)"
        exit 0
    fi
fi

scripts/install-deploy-tools.sh deb
rootfs=target/deploy-tools/rootfs-bookworm
run_id="$(date +%s)-$$"
image="switchyard-systemd-smoke:$run_id"
container="switchyard-systemd-smoke-$run_id"
work="$(mktemp -d)"
log="$work/log"
step="starting"
passed=0

cleanup() {
    local rc=$?
    trap - EXIT
    # Neither an error nor a closed output pipe may stop the teardown.
    set +e
    trap '' PIPE
    if [ "$rc" -ne 0 ]; then
        echo "deb-systemd-smoke: FAILED at: $step" >&2
        [ -s "$log" ] && tail -n 30 "$log" >&2
        echo "--- journal ---" >&2
        docker exec "$container" journalctl -u switchyard --no-pager -n 30 >&2 2>&1 || true
    fi
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker image rm -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo "deb-systemd-smoke: $step: $*" >&2
    exit 1
}

# Runs a shell command inside the container.
inside() {
    docker exec "$container" sh -c "$1"
}

eventually() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "still not true after ${timeout}s: $*"
        sleep 0.2
    done
}

step="the bookworm root file system"
if [ ! -f "$rootfs/.complete" ]; then
    apt_install_quiet() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1 ||
            { apt-get update -qq >>"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1; }
    }
    command -v debootstrap >/dev/null || apt_install_quiet debootstrap
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,procps,curl,jq \
        bookworm "$rootfs" http://deb.debian.org/debian >>"$log" 2>&1
    touch "$rootfs/.complete"
fi
passed=$((passed + 1))

step="cargo deb"
# The binary the package carries is the release build users get: PGO.
scripts/build-release.sh >>"$log" 2>&1
cargo deb --locked --no-build --output "$work/" >>"$log" 2>&1
deb="$(find "$work" -maxdepth 1 -name 'switchyard_*.deb' -print -quit)"
[ -n "$deb" ] || fail "no .deb built"

step="booting systemd in a container"
tar -C "$rootfs" --exclude=./.complete -c . | docker import - "$image" >>"$log"
# systemd as PID 1 needs to manage cgroups and mounts; no --privileged.
docker run -d --name "$container" --cap-add SYS_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    "$image" /lib/systemd/systemd >>"$log"
booted() {
    case "$(inside 'systemctl is-system-running' 2>/dev/null)" in
        running | degraded) return 0 ;;
        *) return 1 ;;
    esac
}
eventually 60 booted
passed=$((passed + 1))

step="dpkg -i"
docker cp "$deb" "$container:/root/switchyard.deb" >>"$log"
inside 'dpkg -i /root/switchyard.deb' >>"$log" 2>&1
[ "$(inside 'systemctl is-enabled switchyard')" = enabled ] || fail "the unit is not enabled"
passed=$((passed + 1))

step="systemctl start: round robin as the switchyard user"
# The package's config balances 127.0.0.1:9001 and :9002.
docker exec -d "$container" /usr/bin/switchyard demo-backend --name one --listen 127.0.0.1:9001
docker exec -d "$container" /usr/bin/switchyard demo-backend --name two --listen 127.0.0.1:9002
inside 'systemctl start switchyard' >>"$log" 2>&1
eventually 30 inside 'curl -sf -m 2 http://127.0.0.1:8001/readyz'
# shellcheck disable=SC2016 # expanded inside the container
[ "$(inside 'ps -o user= -p "$(systemctl show -p MainPID --value switchyard)"')" = switchyard ] ||
    fail "the proxy does not run as switchyard"
alternates() {
    local seq
    seq="$(inside 'for i in 1 2 3 4; do curl -s -m 2 -D - -o /dev/null http://127.0.0.1:8000/ | tr -d "\r" | sed -n "s/^x-served-by: //Ip"; done' | tr '\n' ' ')"
    [ "$seq" = "one two one two " ] || [ "$seq" = "two one two one " ]
}
eventually 15 alternates
passed=$((passed + 1))

admin_get() {
    inside "curl -sf -m 5 -H \"Authorization: Bearer \$(cat /var/lib/switchyard/admin-token)\" http://127.0.0.1:8001$1"
}
last_reload_is() {
    admin_get /api/reload/status |
        jq -e --arg cause "$1" --argjson after "$2" '.last.cause == $cause and .last.result == "ok" and .generation > $after'
}

step="an edit of the config reloaded by the file watcher"
generation="$(admin_get /api/reload/status | jq .generation)"
inside "sed -i 's/^  name = \"app-2\"/  name = \"app-b\"/' /etc/switchyard/switchyard.toml"
eventually 15 last_reload_is file "$generation"
admin_get /api/backends/app/servers/app-b >/dev/null || fail "app-b is not served after the reload"
passed=$((passed + 1))

step="systemctl reload (SIGHUP)"
generation="$(admin_get /api/reload/status | jq .generation)"
inside 'systemctl reload switchyard' >>"$log" 2>&1
eventually 15 last_reload_is signal "$generation"
passed=$((passed + 1))

step="systemctl stop"
inside 'systemctl stop switchyard' >>"$log" 2>&1
[ "$(inside 'systemctl show -p Result --value switchyard')" = success ] || fail "the service did not end cleanly"
[ "$(inside 'systemctl show -p ExecMainStatus --value switchyard')" = 0 ] || fail "the proxy did not exit 0"
passed=$((passed + 1))

echo "deb-systemd-smoke: $passed passed, 0 failed"
