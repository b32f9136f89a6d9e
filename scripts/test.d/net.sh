#!/usr/bin/env bash
# landscape-net: end-to-end test of `landscape router` as a real process: routes from a ci.yml,
# upstreams from --upstream, admin metrics, SIGHUP reload (table swap), SIGTERM drain; then
# HTTPS on the listener (--tls-cert/--tls-key, feature `tls`) with an https:// target.
# Needs python3 (upstreams), curl and openssl (scripts/setup.d/net.apt).
set -euo pipefail
cd "$(dirname "$0")/../.."

# The `tls` feature is off by default (so `cargo test --workspace` does not build it): run the
# whole landscape-net suite with it here (HTTPS listener, `https://` targets, both paths).
cargo test -q -p landscape-net --features tls

BIN="$(pwd)/target/debug/examples/landscape"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "net.sh: FAIL: $*" >&2; echo "--- router log" >&2; cat "$WORK/router.log" >&2 || true; exit 1; }

# Waits (bounded) until FILE contains PATTERN; prints the first matching line.
wait_for_line() {
  local file=$1 pattern=$2
  for _ in $(seq 1 200); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  fail "timed out waiting for /$pattern/ in $file"
}

# Without the `tls` feature the TLS flags are a one-line error naming it.
cargo build -q --example landscape
touch "$WORK/none.pem"
code=0
"$BIN" router --listen 127.0.0.1:0 --tls-cert "$WORK/none.pem" --tls-key "$WORK/none.pem" \
  "$WORK/none.pem" 2> "$WORK/notls.err" || code=$?
[ "$code" = 2 ] && [ "$(wc -l < "$WORK/notls.err")" = 1 ] && grep -q '`tls` feature' "$WORK/notls.err" \
  || { cat "$WORK/notls.err" >&2; echo "net.sh: FAIL: --tls-cert without the tls feature" >&2; exit 1; }

# Everything below runs the binary with the `tls` feature.
cargo build -q --example landscape --features tls

mkdir -p "$WORK/www/x"
echo frontend-root > "$WORK/www/index.html"
echo api-x > "$WORK/www/x/y"
python3 -u -m http.server 0 --bind 127.0.0.1 -d "$WORK/www" > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UP_PORT=$(wait_for_line "$WORK/upstream.log" 'port [0-9]+' | sed -E 's/.*port ([0-9]+).*/\1/')

cat > "$WORK/ci.yml" <<'YML'
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  frontend:
    steps:
      - command: npm start
    network:
      ports:
        - port: 3000
          isPublic: true
      paths:
        - port: 3000
          path: /
  backend:
    steps:
      - command: ./server
    network:
      ports:
        - port: 8080
      paths:
        - port: 8080
          path: /api
          stripPath: true
YML

"$BIN" router --listen 127.0.0.1:0 --admin 127.0.0.1:0 --threads 1 \
  --upstream "frontend=127.0.0.1:$UP_PORT" --upstream "backend:8080=127.0.0.1:$UP_PORT" \
  --workspace ws1 --domain dev.example "$WORK/ci.yml" 2> "$WORK/router.log" &
ROUTER=$!
PIDS+=($ROUTER)
ADDR=$(wait_for_line "$WORK/router.log" '^router listening on ' | awk '{print $4}')
ADMIN=$(wait_for_line "$WORK/router.log" '^admin listening on ' | awk '{print $4}')

[ "$(curl -fsS "http://$ADDR/")" = frontend-root ] || fail "/ did not reach the frontend"
[ "$(curl -fsS "http://$ADDR/api/x/y")" = api-x ] || fail "/api/x/y was not stripped to /x/y"
[ "$(curl -fsS -H 'Host: ws1-3000-frontend.dev.example' "http://$ADDR/")" = frontend-root ] || fail "public-port host route"
# (Into a variable first: `grep -q` ending the pipe early would fail curl's write.)
metrics=$(curl -fsS "http://$ADMIN/metrics")
grep -qF 'landscape_router_requests_total{route="backend:8080/api",status="200"} 1' <<<"$metrics" \
  || fail "metrics do not count the /api request"

# SIGHUP: the file changes, the table swaps; the old prefix is gone, the new one works.
sed -i 's|path: /api|path: /v2|' "$WORK/ci.yml"
kill -HUP "$ROUTER"
wait_for_line "$WORK/router.log" '^reloaded ' > /dev/null
[ "$(curl -fsS "http://$ADDR/v2/x/y")" = api-x ] || fail "/v2 after reload"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/api/x/y")
[ "$code" = 404 ] || fail "/api/x/y after reload: expected the frontend's 404, got $code"

# A broken file on SIGHUP keeps the previous routes.
echo "run: [" > "$WORK/ci.yml"
kill -HUP "$ROUTER"
wait_for_line "$WORK/router.log" 'keeping the previous routes' > /dev/null
[ "$(curl -fsS "http://$ADDR/v2/x/y")" = api-x ] || fail "routes lost after a bad reload"

# SIGTERM: graceful exit with status 0.
kill -TERM "$ROUTER"
status=0
wait "$ROUTER" || status=$?
[ "$status" = 0 ] || fail "router exited with $status on SIGTERM"

# HTTPS: a CA and a localhost leaf made here with openssl; the router serves HTTPS with the
# leaf (ALPN h2 + http/1.1) and routes /ext to an https:// target (a python TLS upstream with
# the same leaf), trusting the CA through --target-ca.
(
  cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca-key.pem -out ca.pem -subj "/CN=net.sh test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
    -subj "/CN=localhost" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    "extendedKeyUsage=serverAuth" > leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -out cert.pem -extfile leaf.ext 2>/dev/null
) || fail "openssl could not make the test certificates"
python3 -u - "$WORK/cert.pem" "$WORK/key.pem" "$WORK/www" > "$WORK/tls-upstream.log" 2>&1 <<'PY' &
import functools, http.server, ssl, sys
cert, key, root = sys.argv[1:4]
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def end_headers(self):
        self.send_header("x-seen-host", self.headers.get("host", ""))
        super().end_headers()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("port", srv.server_address[1], flush=True)
srv.serve_forever()
PY
PIDS+=($!)
TLS_UP_PORT=$(wait_for_line "$WORK/tls-upstream.log" '^port [0-9]+' | awk '{print $2}')
cat > "$WORK/ci-tls.yml" <<YML
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  frontend:
    steps:
      - command: npm start
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /
        - path: /ext
          stripPath: true
          target: https://localhost:$TLS_UP_PORT/x
YML
: > "$WORK/router.log"
"$BIN" router --listen 127.0.0.1:0 --threads 1 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
  --target-ca "$WORK/ca.pem" --upstream "frontend=127.0.0.1:$UP_PORT" "$WORK/ci-tls.yml" 2> "$WORK/router.log" &
ROUTER=$!
PIDS+=($ROUTER)
line=$(wait_for_line "$WORK/router.log" '^router listening on ')
case "$line" in *"(https)"*) ;; *) fail "router does not say it serves https: $line" ;; esac
PORT=$(echo "$line" | awk '{print $4}' | sed 's/.*://')
CURL=(curl -fsS --cacert "$WORK/ca.pem" --resolve "localhost:$PORT:127.0.0.1")
[ "$("${CURL[@]}" --http2 "https://localhost:$PORT/")" = frontend-root ] || fail "https / over h2"
[ "$("${CURL[@]}" --http2 -o /dev/null -w '%{http_version}' "https://localhost:$PORT/")" = 2 ] \
  || fail "ALPN did not pick h2"
[ "$("${CURL[@]}" --http1.1 -o /dev/null -w '%{http_version}' "https://localhost:$PORT/")" = 1.1 ] \
  || fail "ALPN did not pick http/1.1"
[ "$("${CURL[@]}" "https://localhost:$PORT/ext/y")" = api-x ] || fail "/ext/y via the https target"
grep -qi "^x-seen-host: localhost:$TLS_UP_PORT" <<<"$("${CURL[@]}" -D - -o /dev/null "https://localhost:$PORT/ext/y")" \
  || fail "the https target did not get its own host as Host"
# Without the CA the client refuses the router's certificate.
curl -s -o /dev/null --resolve "localhost:$PORT:127.0.0.1" "https://localhost:$PORT/" \
  && fail "curl trusted the router's certificate without the CA"
kill -TERM "$ROUTER"
status=0
wait "$ROUTER" || status=$?
[ "$status" = 0 ] || fail "https router exited with $status on SIGTERM"
echo "net.sh: ok"
