#!/usr/bin/env bash
# Builds the Debian package with `cargo deb`, installs it with `dpkg -i`, and
# checks what it installed: `switchyard check` passes on the installed
# /etc/switchyard/switchyard.toml (run as the package's `switchyard` user),
# the config is a conffile, the state directory belongs to that user,
# `systemd-analyze verify` passes on the unit without a word, the unit is
# enabled, and `systemd-analyze security` rates its sandbox. Then it purges the package,
# even on failure. Needs root (CI runs as root); changes this machine only
# for the duration. SWITCHYARD_SKIP_DEB=1 skips it outside CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${SWITCHYARD_SKIP_DEB:-}" = 1 ]; then
    if [ "${CI:-}" = true ]; then
        echo "deb-check: SWITCHYARD_SKIP_DEB is ignored in CI" >&2
    else
        echo "deb-check: skipped (SWITCHYARD_SKIP_DEB=1)"
        exit 0
    fi
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deb-check: installs a package: run as root" >&2
    exit 1
fi

scripts/install-deploy-tools.sh deb
work="$(mktemp -d)"
log="$work/log"
step="starting"
passed=0
# The sandbox's exposure as systemd-analyze rates it (0-100, lower is
# safer): the unit must stay at or below this.
max_exposure=20

cleanup() {
    local rc=$?
    trap - EXIT
    # Neither an error nor a closed output pipe may stop the teardown.
    set +e
    trap '' PIPE
    if [ "$rc" -ne 0 ]; then
        echo "deb-check: FAILED at: $step" >&2
        [ -s "$log" ] && tail -n 40 "$log" >&2
    fi
    if dpkg-query -W switchyard >/dev/null 2>&1; then
        dpkg --purge switchyard >>"$log" 2>&1 || echo "deb-check: purge failed" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo "deb-check: $step: $*" >&2
    exit 1
}

step="cargo deb"
# The binary the package carries is the release build users get: PGO.
scripts/build-release.sh >>"$log" 2>&1
cargo deb --locked --no-build --output "$work/" >>"$log" 2>&1
deb="$(find "$work" -maxdepth 1 -name 'switchyard_*.deb' -print -quit)"
[ -n "$deb" ] || fail "no .deb built"
passed=$((passed + 1))

step="dpkg -i"
# A leftover from an interrupted run would hide what a fresh install does.
if dpkg-query -W switchyard >/dev/null 2>&1; then
    dpkg --purge switchyard >>"$log" 2>&1
fi
dpkg -i "$deb" >>"$log" 2>&1
[ -x /usr/bin/switchyard ] || fail "/usr/bin/switchyard is not installed"
# ExecReload runs /bin/kill.
dpkg-query -W -f='${Depends}\n' switchyard | grep -qw procps || fail "the package does not depend on procps"
passed=$((passed + 1))

step="the switchyard user and /var/lib/switchyard"
getent passwd switchyard >/dev/null || fail "no switchyard user"
[ "$(stat -c %U:%a /var/lib/switchyard)" = switchyard:750 ] ||
    fail "/var/lib/switchyard is $(stat -c %U:%a /var/lib/switchyard)"
passed=$((passed + 1))

step="switchyard check on the installed config"
dpkg-query -W -f='${Conffiles}\n' switchyard | grep -q '^ /etc/switchyard/switchyard.toml ' ||
    fail "/etc/switchyard/switchyard.toml is not a conffile"
runuser -u switchyard -- /usr/bin/switchyard check -c /etc/switchyard/switchyard.toml >>"$log" 2>&1
passed=$((passed + 1))

step="systemd-analyze verify"
unit="$(dpkg -L switchyard | grep '/systemd/system/switchyard\.service$' || true)"
[ -n "$unit" ] || fail "the package has no switchyard.service"
systemd-analyze verify "$unit" >"$work/verify" 2>&1 || { cat "$work/verify" >>"$log"; fail "verify failed"; }
if [ -s "$work/verify" ]; then
    cat "$work/verify" >>"$log"
    fail "verify warns"
fi
# shellcheck disable=SC2016 # $MAINPID is literal unit text
for line in 'ExecReload=/bin/kill -HUP $MAINPID' 'TimeoutStopSec=30s' 'User=switchyard' 'ProtectSystem=strict' \
    'NoNewPrivileges=true' 'AmbientCapabilities=CAP_NET_BIND_SERVICE' 'ReadWritePaths=/var/lib/switchyard'; do
    grep -qxF "$line" "$unit" || fail "the unit lacks $line"
done
passed=$((passed + 1))

step="enabled at boot"
wants=/etc/systemd/system/multi-user.target.wants/switchyard.service
[ -L "$wants" ] || fail "$wants is missing: the unit is not enabled"
passed=$((passed + 1))

step="systemd-analyze security (exposure at most $max_exposure/100)"
systemd-analyze security --offline=true --threshold="$max_exposure" "$unit" >>"$log" 2>&1
passed=$((passed + 1))

step="dpkg --purge"
dpkg --purge switchyard >>"$log" 2>&1
for gone in /usr/bin/switchyard /etc/switchyard/switchyard.toml /var/lib/switchyard "$unit" "$wants"; do
    [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
passed=$((passed + 1))

echo "deb-check: $passed passed, 0 failed"
