#!/usr/bin/env bash
# landscape-net: end-to-end test of `landscape router` as a real process: routes from a ci.yml,
# upstreams from --upstream, admin metrics, SIGHUP reload (table swap), SIGTERM drain.
# Needs python3 (upstream: http.server) and curl (scripts/setup.d/net.apt).
set -euo pipefail
cd "$(dirname "$0")/../.."

# The `tls` feature is off by default (so `cargo test --workspace` does not build it): run the
# whole landscape-net suite with it here (HTTPS listener, `https://` targets, both paths).
cargo test -q -p landscape-net --features tls

cargo build -q --example landscape
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
curl -fsS "http://$ADMIN/metrics" | grep -q 'landscape_router_requests_total{route="backend:8080/api",status="200"} 1' \
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
echo "net.sh: ok"
