# Sourced by the per-request counting scripts in benches/ (close-per-req.sh,
# cpu-split.sh, instr-h2tls.sh, close-tail.sh): the tools they need, two nginx
# origins, and HAProxy's and Switchyard's configs for the same setup as
# ../shared/bench (round robin over the two origins, pooled keep-alive upstream
# connections, X-Forwarded-For, no access log, one thread).

# need "cmd:debian-package" ... -> installs the packages whose command is missing
need() {
  local missing="" c
  for c in "$@"; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing="$missing ${c#*:}"
  done
  [ -z "$missing" ] && return 0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } >/dev/null 2>&1 \
    || { echo "cannot install:$missing"; exit 1; }
}

# localhost_cert DIR -> DIR/cert.pem, DIR/key.pem (Switchyard's) and
# DIR/both.pem (HAProxy's): a self-signed certificate for localhost
localhost_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$1/key.pem" -out "$1/cert.pem" >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }
  cat "$1/cert.pem" "$1/key.pem" > "$1/both.pem"
}

# start_origins DIR PORT1 PORT2 -> two nginx origins answering "origin=N",
# and /64k with 64 KiB (as ../shared/bench's origins)
start_origins() {
  local dir=$1 i port
  # nginx's workers run as nobody: they must reach the file.
  mkdir -p "$dir/www"; chmod 755 "$dir" "$dir/www"
  [ -s "$dir/www/64k" ] || head -c 65536 /dev/urandom >"$dir/www/64k"
  for i in 1 2; do
    port=$2; [ "$i" = 2 ] && port=$3
    cat > "$dir/origin$i.conf" <<EOF
worker_processes 1; daemon on; pid $dir/origin$i.pid; error_log $dir/logs/o$i.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000;
  client_body_temp_path $dir/cb$i; proxy_temp_path $dir/pt$i; fastcgi_temp_path $dir/ft$i; uwsgi_temp_path $dir/ut$i; scgi_temp_path $dir/st$i;
  server { listen 127.0.0.1:$port backlog=4096; location / { return 200 "origin=$i\n"; }
    location = /64k { root $dir/www; default_type application/octet-stream; } } }
EOF
    nginx -c "$dir/origin$i.conf" -p "$dir" || { echo "origin $i failed"; exit 1; }
  done
}

wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# haproxy_cfg PORT ORIGIN1 ORIGIN2 [BIND_OPTIONS] -> HAProxy's config on stdout
haproxy_cfg() {
  cat <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$1${4:+ $4}
  default_backend origins
backend origins
  balance roundrobin
  server o1 127.0.0.1:$2
  server o2 127.0.0.1:$3
EOF
}

# switchyard_cfg PORT ORIGIN1 ORIGIN2 [FRONTEND_LINE] -> Switchyard's config on stdout
switchyard_cfg() {
  cat <<EOF
[global]
access_log = "off"
[admin]
listen = "127.0.0.1:$(($1 + 50))"
[[frontend]]
name = "web"
listen = "127.0.0.1:$1"
default_backend = "app"
${4:-}
[[backend]]
name = "app"
  [[backend.server]]
  name = "o1"
  address = "127.0.0.1:$2"
  [[backend.server]]
  name = "o2"
  address = "127.0.0.1:$3"
EOF
}
