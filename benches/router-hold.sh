#!/usr/bin/env bash
# Hold overhead: time from "endpoint ready" to the held response, over ROUNDS rounds of HELD
# held requests each (defaults 30 x 50). Target: p99 under 5 ms. Prints
#   hold_ready_to_response_ms p50=<x> p99=<y> max=<z> n=<n>
# Not run by CI. Needs only cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --release -p landscape-net --example hold_overhead
