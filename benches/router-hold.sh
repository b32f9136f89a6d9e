#!/usr/bin/env bash
# Hold overhead: time from "endpoint ready" to the held response. Each round holds HELD
# requests on a sleeping service, publishes the endpoint of a new upstream (a real cold
# start: no idle connection to reuse), and records when each response arrives. Runs three
# shapes: 1, 10 and 50 held requests per round (released requests share at most
# RouterConfig::release_connections new upstream connections). Target: p99 under 5 ms.
# Prints per shape:
#   held=<n> hold_ready_to_response_ms p50=<x> p99=<y> max=<z> n=<samples> upstream_conns_per_round=<c>
# Not run by CI. Needs only cargo (release build of landscape-net's `hold_overhead` example).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p landscape-net --example hold_overhead
for shape in "1 300" "10 100" "50 30"; do
  set -- $shape
  printf 'held=%s ' "$1"
  HELD=$1 ROUNDS=$2 target/release/examples/hold_overhead
done
