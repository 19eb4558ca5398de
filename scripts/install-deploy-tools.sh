#!/usr/bin/env bash
# Installs what the deployment checks need, pinned, and prints nothing when
# all is there already:
#   - cargo-deb (crates.io), for scripts/deb-check.sh;
#   - systemd's systemd-analyze and adduser (Debian), for the same;
#   - check-jsonschema and kubernetes-validate (PyPI) in a virtualenv under
#     target/deploy-tools, for scripts/validate-manifests.sh.
# Usage: scripts/install-deploy-tools.sh [deb|manifests]... (default: both).
# Run as root (CI) or with sudo for the Debian packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DEB_VERSION=3.8.0
CHECK_JSONSCHEMA_VERSION=0.39.0
KUBERNETES_VALIDATE_VERSION=1.37.0
venv=target/deploy-tools/venv

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_deb_tools() {
    apt_install systemd adduser dpkg-dev
    if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
        echo "installing cargo-deb $CARGO_DEB_VERSION"
        cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
    fi
}

install_manifest_tools() {
    local want="check-jsonschema==$CHECK_JSONSCHEMA_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    if [ -f "$venv/pinned" ] && [ "$(cat "$venv/pinned")" = "$want" ]; then
        return 0
    fi
    echo "installing into $venv: $want"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # $want is a list of requirements
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" >"$venv/pinned"
}

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(deb manifests)
for target in "${targets[@]}"; do
    case "$target" in
        deb) install_deb_tools ;;
        manifests) install_manifest_tools ;;
        *) echo "unknown target: $target (deb, manifests)" >&2; exit 2 ;;
    esac
done
