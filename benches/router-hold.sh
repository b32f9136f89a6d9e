#!/usr/bin/env bash
# Hold overhead: time from "endpoint ready" to the held response. Each round holds HELD
# requests on a sleeping service, publishes the endpoint, and records when each response
# arrives. Runs three shapes: 1, 10 and 50 held requests per round (each held request needs
# its own new upstream connection, so with 50 the last response also waits for 49 others).
# Target: p99 under 5 ms. Prints per shape:
#   held=<n> hold_ready_to_response_ms p50=<x> p99=<y> max=<z> n=<samples>
# Not run by CI. Needs only cargo (release build of landscape-net's `hold_overhead` example).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p landscape-net --example hold_overhead
for shape in "1 300" "10 100" "50 30"; do
  set -- $shape
  printf 'held=%s ' "$1"
  HELD=$1 ROUNDS=$2 target/release/examples/hold_overhead
done
