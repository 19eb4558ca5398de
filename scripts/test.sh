#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Chromium for the stats
# page's browser test), then runs every test. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -x scripts/install-test-deps.sh ]; then
  scripts/install-test-deps.sh
fi
cargo test --all-targets "$@"
