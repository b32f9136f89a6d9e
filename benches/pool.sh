#!/usr/bin/env bash
# Pre-warmed pool hand-out (landscape-runtime's `netbench pool`, release build): the time
# from Parked::assign to the command running in a parked instance (namespaces, root and
# network address ready), against a cold Runtime::spawn of the same attached `sleep 1000`,
# and against a plain fork+exec of `sleep` on the host; medians over ROUNDS rounds.
# Prints the key=value lines, then:
#   name=pool-handout ms=<median hand-out> ratio=<hand-out / cold spawn> vs_host_exec=<hand-out / host exec>
# Target: hand-out <= 1 ms. Runs as the current user. Benchmark, not a test; not run by CI.
# Usage: benches/pool.sh [ROUNDS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
case $rounds in
  '' | *[!0-9]*) echo "pool: ROUNDS must be a number, got '$rounds'" >&2; exit 2 ;;
esac
cargo build -q --release -p landscape-runtime --example netbench
echo "pool: $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, uid $(id -u)" >&2
out=$(target/release/examples/netbench pool "$rounds")
echo "$out"
val() { sed -n "s/^$1=//p" <<<"$out"; }
echo "name=pool-handout ms=$(val pool_handout_p50_ms) ratio=$(val ratio) vs_host_exec=$(val handout_vs_exec)"
