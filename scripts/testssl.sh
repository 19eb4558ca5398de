#!/usr/bin/env bash
# Runs Debian's testssl.sh against a Switchyard TLS frontend on loopback with
# a self-made certificate (openssl), and fails on any HIGH or CRITICAL
# finding about the server. Two findings concern only the self-made test
# certificate, not the server, and are listed but not counted: its chain of
# trust (self-signed) and its revocation info (no CRL/OCSP URI). Installs the
# testssl.sh package when missing (root or sudo).
#
#   cargo build && scripts/testssl.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$here/target/debug/switchyard}"
[ -x "$bin" ] || { echo "build first: cargo build (or set SWITCHYARD_BIN)" >&2; exit 2; }

if ! command -v testssl >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends testssl.sh openssl >/dev/null
fi

work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=switchyard.test" -addext "subjectAltName=DNS:switchyard.test" \
    -keyout "$work/site.key" -out "$work/site.pem" 2>/dev/null
chmod 600 "$work/site.key"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
origin_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$work/switchyard.toml" <<TOML
[global]
access_log = "off"

[admin]
listen = "127.0.0.1:0"

[[frontend]]
name = "tls"
listen = "127.0.0.1:$port"
default_backend = "app"
tls = { certs = [ { cert = "site.pem", key = "site.key" } ] }
hsts = "max-age=31536000"

[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "127.0.0.1:$origin_port"
TOML
"$bin" run --state-dir "$work/state" -c "$work/switchyard.toml" >"$work/proxy.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

testssl --quiet --color 0 --warnings batch --jsonfile "$work/testssl.json" \
    --ip 127.0.0.1 "https://switchyard.test:$port" | tee "$work/testssl.txt" || true
[ -s "$work/testssl.json" ] || { echo "testssl produced no findings file" >&2; exit 1; }
python3 - "$work/testssl.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
count = {}
for f in findings:
    count[f.get("severity", "?")] = count.get(f.get("severity", "?"), 0) + 1
print("testssl severities:", ", ".join(f"{k} {v}" for k, v in sorted(count.items())))
# Properties of the self-made certificate, not of the server.
own_cert = {"cert_chain_of_trust", "cert_revocation"}
for f in findings:
    if f["id"] in own_cert:
        print(f"not counted (test certificate): {f['severity']}: {f['id']}: {f['finding']}")
bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL") and f["id"] not in own_cert]
for f in bad:
    print(f"{f['severity']}: {f['id']}: {f['finding']}")
sys.exit(1 if bad else 0)
PY
