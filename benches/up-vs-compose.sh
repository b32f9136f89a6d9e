#!/usr/bin/env bash
# `landscape up -d` / `down` against `podman-compose up -d` / `down` on the same services:
# N busybox httpd services, each answering its name; "ready" = every service answers
# (landscape: through its router at /sN/; podman-compose: on its published 127.0.0.1
# port). podman runs as root with --runtime runc (crun refuses this machine's hybrid
# cgroups) and explicit nofile/nproc ulimits, from a busybox rootfs `podman import`ed
# (no registry). Rounds alternate between the tools; medians.
# Prints key=value lines, then per size:
#   name=up-N   ratio=<podman-compose ready / landscape ready>
#   name=down-N ratio=<podman-compose down / landscape down>
# Benchmark, not a test; not run by CI. Needs root, podman, podman-compose, busybox-static
# (Debian: apt-get install podman podman-compose busybox-static).
# Usage: benches/up-vs-compose.sh [ROUNDS] [SIZES...]   (default: 2 rounds of 4 and 1 of 10)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
rounds=${1:-2}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(4 10)
[ "$(id -u)" -eq 0 ] || { echo "up-vs-compose: podman runs as root here; run as root" >&2; exit 2; }
for t in podman podman-compose busybox curl; do
  command -v "$t" >/dev/null || { echo "up-vs-compose: $t missing (apt-get install podman podman-compose busybox-static curl)" >&2; exit 2; }
done
# LANDSCAPE_BIN: a CLI built beforehand (default: build the release example here).
landscape_cli
work=$(mktemp -d /tmp/landscape-vs-compose.XXXXXX)
chmod 755 "$work"
image=localhost/landscape-bench-busybox:1
cleanup() {
  for d in "$work"/land-*; do [ -d "$d" ] && "$L" down "$d" >/dev/null 2>&1 || true; done
  for d in "$work"/compose-*; do
    [ -d "$d" ] && (cd "$d" && podman-compose down -t 1 >/dev/null 2>&1) || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The image: a busybox root filesystem.
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in $("$work/rootfs/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"
done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
podman_conf "$work"  # runc, explicit ulimits (benches/lib.sh)
podman import -q "$work/rootfs.tar" "$image" >/dev/null

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
wait_all() { # URL...
  local deadline=$((SECONDS + 120)) u
  for u in "$@"; do
    until [ -n "$(curl -s --max-time 2 "$u")" ]; do
      [ $SECONDS -lt $deadline ] || { echo "up-vs-compose: $u never answered" >&2; exit 1; }
      sleep 0.02
    done
  done
}

landscape_round() { # N DIR PORT -> "ready down"
  local n=$1 dir=$2 port=$3 i
  mkdir -p "$dir"
  { echo "schemaVersion: v0.4"; echo "run:"
    for i in $(seq 0 $((n - 1))); do
      printf '  s%s:\n    steps:\n      - command: mkdir -p /tmp/w && echo s%s > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w\n    network:\n      ports:\n        - port: 3000\n      paths:\n        - port: 3000\n          path: /s%s\n          stripPath: true\n' "$i" "$i" "$i"
    done; } > "$dir/ci.yml"
  local urls=() t0 t1 t2
  for i in $(seq 0 $((n - 1))); do urls+=("http://127.0.0.1:$port/s$i/"); done
  t0=$(now)
  "$L" up -d "$dir" --listen "127.0.0.1:$port" --no-egress >/dev/null 2>&1
  wait_all "${urls[@]}"
  t1=$(now)
  "$L" down "$dir" >/dev/null
  t2=$(now)
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1" "$t2")"
}

compose_round() { # N DIR PORT -> "ready down"
  local n=$1 dir=$2 port=$3 i
  mkdir -p "$dir"
  { echo "services:"
    for i in $(seq 0 $((n - 1))); do
      printf '  s%s:\n    image: %s\n    command: ["sh", "-c", "mkdir -p /w && echo s%s > /w/index.html && exec httpd -f -p 3000 -h /w"]\n    ports:\n      - "127.0.0.1:%s:3000"\n' "$i" "$image" "$i" $((port + i))
    done; } > "$dir/compose.yml"
  local urls=() t0 t1 t2
  for i in $(seq 0 $((n - 1))); do urls+=("http://127.0.0.1:$((port + i))/"); done
  t0=$(now)
  (cd "$dir" && podman-compose -f compose.yml up -d >/dev/null 2>&1)
  wait_all "${urls[@]}"
  t1=$(now)
  (cd "$dir" && podman-compose -f compose.yml down >/dev/null 2>&1)
  t2=$(now)
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1" "$t2")"
}

echo "up-vs-compose: $rounds rounds, sizes ${sizes[*]}, load average $(cut -d' ' -f1-3 /proc/loadavg), $(podman --version)" >&2
summary=()
for n in "${sizes[@]}"; do
  r=$rounds
  [ "$n" -ge 10 ] && [ "$r" -gt 1 ] && r=1   # podman-compose's down takes ~10 s per service
  lu=() ld=() cu=() cd=()
  for k in $(seq 1 "$r"); do
    read -r u d < <(landscape_round "$n" "$work/land-$n-$k" 3800)
    lu+=("$u"); ld+=("$d")
    read -r u d < <(compose_round "$n" "$work/compose-$n-$k" 3900)
    cu+=("$u"); cd+=("$d")
  done
  a=$(printf '%s\n' "${lu[@]}" | median); b=$(printf '%s\n' "${cu[@]}" | median)
  c=$(printf '%s\n' "${ld[@]}" | median); e=$(printf '%s\n' "${cd[@]}" | median)
  echo "size=$n rounds=$r landscape_ready_s=$a compose_ready_s=$b landscape_down_s=$c compose_down_s=$e"
  summary+=("name=up-$n ratio=$(awk -v x="$b" -v y="$a" 'BEGIN {printf "%.1f", x / y}')")
  summary+=("name=down-$n ratio=$(awk -v x="$e" -v y="$c" 'BEGIN {printf "%.1f", x / y}')")
done
printf '%s\n' "${summary[@]}"
