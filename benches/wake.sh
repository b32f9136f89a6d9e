#!/usr/bin/env bash
# Off-when-unused, measured through the real CLI and router (release build): the latency of
# the first request to a frozen service and to a stopped (asleep) one, against the same
# request to the running service. Each round waits (polling `landscape ps`) until the
# service is frozen or stopped again, then times one request with curl; medians.
# Prints key=value lines, then:
#   name=wake-frozen  added_ms=<median first request after freeze - median warm request>
#   name=wake-stopped added_ms=<median first request after stop - median warm request>
#   name=wake-stopped-pool added_ms=<the same with `up --pool 1`: the replica comes back
#                                    from a pre-warmed instance instead of a cold start>
# Benchmark, not a test; not run by CI. Traffic only to 127.0.0.1.
# Usage: benches/wake.sh [ROUNDS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-15}
case $rounds in '' | *[!0-9]*) echo "wake: ROUNDS must be a number" >&2; exit 2 ;; esac
cargo build -q --release --example landscape
L=$PWD/target/release/examples/landscape
work=$(mktemp -d /tmp/landscape-wake.XXXXXX)
chmod 755 "$work"
port=3790
cleanup() { "$L" down "$work/app" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/app"
cat > "$work/app/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  web:
    steps:
      - command: mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /
YAML
time_req() { curl -s -o /dev/null -w '%{time_total}\n' --max-time 10 "http://127.0.0.1:$port/"; }
state() { "$L" ps "$work/app" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])'; }
wait_state() { # STATE
  local deadline=$((SECONDS + 30))
  until [ "$(state)" = "$1" ]; do
    [ $SECONDS -lt $deadline ] || { echo "wake: never $1" >&2; exit 1; }
    sleep 0.02
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run() { # LABEL MODE FLAGS...
  local label=$1 mode=$2; shift 2
  "$L" up -d "$work/app" --listen "127.0.0.1:$port" --no-egress "$@" >/dev/null 2>&1
  local warm=() cold=() i
  for i in $(seq 1 "$rounds"); do
    wait_state "$mode"
    cold+=("$(time_req)")
    warm+=("$(time_req)")
  done
  "$L" down "$work/app" >/dev/null
  local w c
  w=$(printf '%s\n' "${warm[@]}" | median)
  c=$(printf '%s\n' "${cold[@]}" | median)
  echo "${label//-/_}_warm_p50_ms=$(awk -v x="$w" 'BEGIN {printf "%.3f", x * 1000}')"
  echo "${label//-/_}_first_p50_ms=$(awk -v x="$c" 'BEGIN {printf "%.3f", x * 1000}')"
  echo "name=wake-$label added_ms=$(awk -v c="$c" -v w="$w" 'BEGIN {printf "%.3f", (c - w) * 1000}')"
}
echo "wake: $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), uid $(id -u)" >&2
run frozen frozen --freeze-after 100ms
run stopped stopped --stop-after 100ms
run stopped-pool stopped --stop-after 100ms --pool 1
