#!/usr/bin/env bash
# The cold start as a host embedding landscape-runtime sees it (the supervisor's cold
# path): `Runtime::spawn` + wait of `/bin/true` with every namespace, an overlay root over
# a busybox-static root filesystem, the app directory bound, once unattached and once
# attached to a landscape network, against the fork + exec floor: `std::process::Command`
# + wait of the same busybox `/bin/true` on the host, from the same process, interleaved
# (netbench's `cold` mode, release build). Prints netbench's lines and
#   name=cold-start ratio=<attached / floor> instance_ratio=<unattached / floor>
# Then netbench's `ns` mode: what the kernel alone charges per namespace kind (raw clone +
# exit + wait), `ns_<set>_p50_ms` lines and `ns_network_ms`.
# Target (issue #15): ratio <= 2. `landscape exec`'s start from a shell, which adds the
# CLI's own exec, is benches/exec-vs-others.sh. Benchmark, not a test; runs as root or
# unprivileged. Traffic: none (the instances run /bin/true). Needs: busybox-static.
# Usage: benches/cold-start.sh [ROUNDS]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-300}
case $rounds in
  '' | *[!0-9]*) echo "cold-start: ROUNDS must be a number, got '$rounds'" >&2; exit 2 ;;
esac
busybox=$(command -v busybox || true)
[ -x /bin/busybox ] && busybox=/bin/busybox
if [ -z "$busybox" ]; then
  echo "cold-start: busybox missing; apt-get install busybox-static" >&2
  exit 2
fi
cargo build -q --release -p landscape-runtime --example netbench
work=$(mktemp -d /tmp/landscape-cold.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,proc,dev,sys,tmp,etc,home/user/app}
cp "$busybox" "$rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$rootfs/bin/$a"; done
echo "cold-start: $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, uid $(id -u)" >&2
out=$(NETBENCH_ROOTFS=$rootfs target/release/examples/netbench cold "$rounds")
echo "$out"
val() { sed -n "s/^$1=//p" <<<"$out"; }
echo "name=cold-start ratio=$(val ratio) instance_ratio=$(val cold_instance_vs_floor) floor_ms=$(val cold_floor_p50_ms)"
target/release/examples/netbench ns "$rounds"
