#!/usr/bin/env bash
# Installs what the integration tests need beyond cargo: Debian's headless
# Chromium and its WebDriver, for tests/admin_browser.rs; curl, for
# scripts/walkthrough.sh (tests/walkthrough.rs); openssl, for a test
# certificate in tests/import.rs; git, for the state-directory check's test.
# Idempotent: does nothing when all are installed. Run as root (CI) or with sudo.
set -euo pipefail

packages=(chromium chromium-driver curl openssl git)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "test dependencies already installed: ${packages[*]}"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing test dependencies: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
chromium --version
