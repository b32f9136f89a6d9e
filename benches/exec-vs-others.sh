#!/usr/bin/env bash
# Cold-start comparison: run /bin/true in a busybox root filesystem (Debian busybox-static)
# with landscape's executor and, interleaved in the same run, with runc (as root),
# bwrap --unshare-all, crun (where it runs) and podman (as root, `podman run --rm` of the
# same rootfs `podman import`ed, with --runtime runc since crun refuses this machine's hybrid
# cgroups; PODMAN_RUNS rounds, default min(RUNS, 30), as each takes ~0.1 s), plus a plain
# fork+exec of /bin/true as the floor. Prints one line per tool:
#   tool=<name> p50_ms=<x> ratio_to_landscape=<tool time / landscape time>
# Benchmark, not a test. Needs: busybox-static; optional: runc, bubblewrap, crun, podman
# (scripts/bench.sh installs them all).
# Usage: benches/exec-vs-others.sh [RUNS]   (default 200; env LANDSCAPE=path to a built
# `landscape` binary, default: the static CLI from scripts/build-cli.sh, the way it is meant to
# be installed; the ordinary dynamically linked `cargo build --release --example landscape` is
# timed beside it as tool=landscape-dynamic unless LANDSCAPE_DYNAMIC=none)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
runs=${1:-200}

busybox=$(command -v busybox || true)
[ -x /bin/busybox ] && busybox=/bin/busybox
if [ -z "$busybox" ]; then
  echo "exec-vs-others: busybox missing; apt-get install busybox-static" >&2
  exit 2
fi

work=$(mktemp -d /tmp/landscape-bench.XXXXXX)
chmod 755 "$work"
podman_image=localhost/landscape-exec-bench:1
have_podman=0
cleanup() {
  for id in $(seq 0 3); do
    runc delete -f "lsbench-$$-$id" >/dev/null 2>&1 || true
  done
  [ $have_podman = 1 ] && podman rmi -f "$podman_image" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${LANDSCAPE_DYNAMIC:-}" ] && [ -z "${LANDSCAPE:-}" ]; then
  cargo build --release --example landscape >&2
  cp target/release/examples/landscape "$work/landscape-dynamic"
  LANDSCAPE_DYNAMIC=$work/landscape-dynamic
fi
[ "${LANDSCAPE_DYNAMIC:-none}" = none ] && LANDSCAPE_DYNAMIC=
if [ -z "${LANDSCAPE:-}" ]; then
  LANDSCAPE=$(./scripts/build-cli.sh "$work/landscape")
fi

# The busybox root filesystem, shared by every tool.
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,proc,dev,sys,tmp,etc,home/user/app}
cp "$busybox" "$rootfs/bin/busybox"
for a in sh true ls cat; do ln -s busybox "$rootfs/bin/$a"; done
app=$work/app
mkdir -p "$app"
# As root, landscape maps the container to a subordinate id: give it the app dir.
if [ "$(id -u)" -eq 0 ] && sub=$(grep -E '^(root|0):' /etc/subuid | head -1 | cut -d: -f2); then
  chown "$sub:$sub" "$app"
fi

# An OCI bundle for runc/crun.
have_runc=0 have_crun=0 have_bwrap=0
if [ "$(id -u)" -eq 0 ] && command -v runc >/dev/null; then
  (cd "$work/bundle" && runc spec)
  sed -i -e 's/"terminal": true/"terminal": false/' \
         -e '/"args": \[/,/\]/c\		"args": [ "/bin/true" ],' "$work/bundle/config.json"
  have_runc=1
  if command -v crun >/dev/null; then
    if out=$(crun run --bundle "$work/bundle" "lsbench-$$-probe" 2>&1); then
      have_crun=1
    else
      crun delete -f "lsbench-$$-probe" >/dev/null 2>&1 || true
      echo "tool=crun skipped: $(crun --version | head -1) fails here: ${out//$'\n'/ }" >&2
    fi
  fi
elif [ "$(id -u)" -ne 0 ]; then
  echo "tool=runc skipped: needs root" >&2
fi
command -v bwrap >/dev/null && have_bwrap=1
podman_runs=${PODMAN_RUNS:-$((runs < 30 ? runs : 30))}
if [ "$(id -u)" -eq 0 ] && command -v podman >/dev/null && command -v runc >/dev/null; then
  podman_conf "$work"
  if tar -C "$rootfs" -cf "$work/rootfs.tar" . && podman import -q "$work/rootfs.tar" "$podman_image" >/dev/null &&
     out=$(podman run --rm --network none "$podman_image" /bin/true 2>&1); then
    have_podman=1
  else
    echo "tool=podman skipped: it fails here: ${out//$'\n'/ }" >&2
  fi
elif [ "$(id -u)" -ne 0 ]; then
  echo "tool=podman skipped: runs as root here" >&2
else
  echo "tool=podman skipped: podman or runc missing (scripts/bench.sh installs them)" >&2
fi


declare -A samples
record() { samples[$1]+="$2 "; }

time_cmd() { # name cmd...
  local name=$1; shift
  local t0=${EPOCHREALTIME/./}
  "$@" >/dev/null 2>&1 || { echo "exec-vs-others: $name failed: $*" >&2; return 1; }
  local t1=${EPOCHREALTIME/./}
  record "$name" $((t1 - t0))
}

# Warm up page cache and binaries.
"$LANDSCAPE" exec --image "rootfs:$rootfs" --app "$app" -- /bin/true
[ -z "$LANDSCAPE_DYNAMIC" ] || "$LANDSCAPE_DYNAMIC" exec --image "rootfs:$rootfs" --app "$app" -- /bin/true
for i in $(seq 1 "$runs"); do
  time_cmd fork+exec /bin/true
  time_cmd landscape "$LANDSCAPE" exec --image "rootfs:$rootfs" --app "$app" -- /bin/true
  if [ -n "$LANDSCAPE_DYNAMIC" ]; then
    time_cmd landscape-dynamic "$LANDSCAPE_DYNAMIC" exec --image "rootfs:$rootfs" --app "$app" -- /bin/true
  fi
  if [ $have_bwrap = 1 ]; then
    time_cmd bwrap bwrap --unshare-all --ro-bind "$rootfs" / --proc /proc --dev /dev --tmpfs /tmp \
      --bind "$app" /home/user/app /bin/true
  fi
  if [ $have_runc = 1 ]; then
    time_cmd runc runc run --bundle "$work/bundle" "lsbench-$$-1"
  fi
  if [ $have_crun = 1 ]; then
    time_cmd crun crun run --bundle "$work/bundle" "lsbench-$$-2"
  fi
  if [ $have_podman = 1 ] && [ "$i" -le "$podman_runs" ]; then
    time_cmd podman podman run --rm --network none "$podman_image" /bin/true
  fi
done

median_ms() { # "us us us ..."
  tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.2f", m / 1000}'
}

# Context for reading the numbers (other load on the machine makes all of them slower).
echo "exec-vs-others: $runs rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs" >&2
base=$(median_ms "${samples[landscape]}")
for tool in fork+exec landscape landscape-dynamic bwrap runc crun podman; do
  [ -n "${samples[$tool]:-}" ] || continue
  p50=$(median_ms "${samples[$tool]}")
  ratio=$(awk -v a="$p50" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
  echo "tool=$tool p50_ms=$p50 ratio_to_landscape=$ratio"
done
