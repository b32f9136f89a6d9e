#!/usr/bin/env bash
# Supervision figures (landscape-runtime's `supbench` example, release build), medians:
#   crash   SIGKILL of a replica's command until the supervisor reports the exit (detection,
#           from the helper's reaping, no polling) and until the replica is running again
#           (restart backoff 1 ms); against kill + waitpid of a plain child process.
#   adopt   Supervisor::adopt of 50 durable replicas after their host was killed with
#           SIGKILL, until every one is ready again (same processes); against the cold
#           start of the same 50 by that host.
# Prints the key=value lines, then one summary line per figure:
#   name=crash-detect ms=<median> floor_ms=<kill+wait of a plain child>
#   name=adopt-50 ms=<median> ratio=<adopt / cold start>
# Runs as the current user. Benchmark, not a test; not run by CI.
# Usage: benches/supervise.sh [CRASH_ROUNDS] [ADOPT_ROUNDS]   (default 50 3)
set -euo pipefail
cd "$(dirname "$0")/.."
crash_rounds=${1:-50}
adopt_rounds=${2:-3}
for n in "$crash_rounds" "$adopt_rounds"; do
  case $n in '' | *[!0-9]*) echo "supervise: rounds must be numbers, got '$n'" >&2; exit 2 ;; esac
done
cargo build -q --release -p landscape-runtime --example supbench
echo "supervise: load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, uid $(id -u)" >&2
crash=$(target/release/examples/supbench crash "$crash_rounds")
echo "$crash"
adopt=$(target/release/examples/supbench adopt "$adopt_rounds")
echo "$adopt"
val() { sed -n "s/^$2=//p" <<<"$1"; }
echo "name=crash-detect ms=$(val "$crash" crash_detect_p50_ms) floor_ms=$(val "$crash" crash_floor_kill_wait_p50_ms) back_ready_ms=$(val "$crash" crash_back_ready_p50_ms)"
echo "name=adopt-50 ms=$(val "$adopt" adopt_p50_ms) ratio=$(val "$adopt" ratio) cold_start_ms=$(val "$adopt" adopt_cold_start_p50_ms)"
