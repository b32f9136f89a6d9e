#!/usr/bin/env bash
# What the landscape network costs (landscape-runtime's `netbench` example, release build),
# each figure a median over interleaved rounds, networked against the same without network:
#   net-start      cold start + wait of /bin/true via Runtime::spawn, attached to a network
#                  (address allocated and released per round) vs not. Target: adds < 1 ms.
#   net-attach-1   start (spawn until it returns) + stop of one `sleep 1000` instance, per
#   net-attach-50  instance, with 1 and with 50 instances running at once; attached vs not.
#   net-connect    connect + GET / HTTP/1.0 + read to end from the host through
#                  Network::connect to an attached instance's busybox httpd, vs plain
#                  loopback to a busybox httpd on 127.0.0.1. Target: ratio <= 1.10.
# Prints every result line of the three modes (key=value), then one summary line per figure:
#   name=<figure> ratio=<networked / plain> [added_ms=<difference of the medians>]
# Runs as the current user (root or unprivileged). Benchmark, not a test; not run by CI.
# Needs: busybox-static. Traffic only to 127.0.0.1 and inside the network it creates.
# Usage: benches/net-attach.sh [ROUNDS]   (default 200; the 50-instance shape runs
# max(2, ROUNDS/20) rounds of 50 instances)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
case $rounds in
  '' | *[!0-9]*) echo "net-attach: ROUNDS must be a number, got '$rounds'" >&2; exit 2 ;;
esac
if ! command -v busybox >/dev/null; then
  echo "net-attach: busybox missing; apt-get install busybox-static" >&2
  exit 2
fi

cargo build -q --release -p landscape-runtime --example netbench
bench=target/release/examples/netbench

echo "net-attach: $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, uid $(id -u)" >&2
start=$("$bench" start "$rounds")
echo "$start"
attach=$("$bench" attach "$rounds")
echo "$attach"
connect=$("$bench" connect "$rounds")
echo "$connect"

val() { # output key
  sed -n "s/^$2=//p" <<<"$1"
}
echo "name=net-start ratio=$(val "$start" ratio) added_ms=$(val "$start" net_added_ms)"
for n in 1 50; do
  echo "name=net-attach-$n ratio=$(val "$attach" "attach_n${n}_ratio") added_ms=$(val "$attach" "attach_n${n}_added_ms")"
done
echo "name=net-connect ratio=$(val "$connect" ratio)"
