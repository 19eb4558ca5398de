#!/usr/bin/env bash
# Validates the deployment files, as CI does:
#   - deploy/kubernetes/*.yaml against the Kubernetes schemas
#     (kubernetes-validate, strict: unknown fields are errors);
#   - the config inside the ConfigMap with `switchyard check` (with
#     SWITCHYARD_ADMIN_TOKEN set, as the Deployment sets it from the Secret:
#     its `peers` need the shared token);
#   - docker-compose.yaml and deploy/replicas/docker-compose.yaml against the
#     Compose specification's JSON schema
#     (check-jsonschema's vendored compose-spec), and with the installed
#     compose tool's own `config` when there is one.
# The validators are installed, pinned, by scripts/install-deploy-tools.sh.
# Quiet on success but for one closing line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deploy-tools.sh manifests
venv=target/deploy-tools/venv
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0

fail() {
    echo "validate-manifests: $1" >&2
    [ -s "$work/out" ] && cat "$work/out" >&2
    exit 1
}

# Kubernetes.
manifests=(deploy/kubernetes/*.yaml)
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}" >"$work/out" 2>&1 ||
    fail "Kubernetes manifests do not validate"
passed=$((passed + ${#manifests[@]}))

# The ConfigMap's config passes `switchyard check`.
"$venv/bin/python" - deploy/kubernetes/configmap.yaml "$work/switchyard.toml" <<'PY' >"$work/out" 2>&1 ||
import sys, yaml
with open(sys.argv[1]) as f:
    config = yaml.safe_load(f)["data"]["switchyard.toml"]
with open(sys.argv[2], "w") as f:
    f.write(config)
PY
    fail "cannot read switchyard.toml from the ConfigMap"
cargo build --quiet
SWITCHYARD_ADMIN_TOKEN=validate target/debug/switchyard check -c "$work/switchyard.toml" >"$work/out" 2>&1 ||
    fail "the ConfigMap's switchyard.toml does not pass switchyard check"
passed=$((passed + 1))

# Compose.
compose_files=(docker-compose.yaml deploy/replicas/docker-compose.yaml)
for file in "${compose_files[@]}"; do
    "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$file" >"$work/out" 2>&1 ||
        fail "$file does not validate against the Compose specification"
    passed=$((passed + 1))
done
# The replicas' config passes `switchyard check`.
SWITCHYARD_ADMIN_TOKEN=validate target/debug/switchyard check -c deploy/replicas/switchyard.toml >"$work/out" 2>&1 ||
    fail "deploy/replicas/switchyard.toml does not pass switchyard check"
passed=$((passed + 1))
if docker compose version >/dev/null 2>&1; then
    compose_tool=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_tool=(docker-compose)
else
    compose_tool=()
fi
if [ "${#compose_tool[@]}" -gt 0 ]; then
    for file in "${compose_files[@]}"; do
        SWITCHYARD_ADMIN_TOKEN=validate "${compose_tool[@]}" -f "$file" config -q >"$work/out" 2>&1 ||
            fail "${compose_tool[*]} config rejects $file"
        passed=$((passed + 1))
    done
fi

echo "validate-manifests: $passed passed, 0 failed"
