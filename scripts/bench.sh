#!/usr/bin/env bash
# Every benchmark in one command, on a fresh Debian machine: installs the peers we compare
# against (bubblewrap, runc, crun, podman, podman-compose, nginx, wrk, busybox-static —
# Debian packages), builds what the benches run in release mode (each bench builds its own
# binary), runs each bench and prints its own lines, then a table of the figures
# (`name=`/`tool=`/`size=` lines: medians and ratios measured side by side in one run).
# Usage: ./scripts/bench.sh [NAME...]   NAME: exec cold router net pool supervise wake up
#        managed spec hold (default: all). Every bench also runs alone: benches/<script>.sh.
# Benchmarks, not tests; not run by CI. Several need root (runc, podman, nginx as a peer).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A script=(
  [exec]="benches/exec-vs-others.sh 200"
  [cold]="benches/cold-start.sh 300"
  [router]="benches/router-vs-nginx.sh"
  [net]="benches/net-attach.sh 200"
  [pool]="benches/pool.sh 200"
  [supervise]="benches/supervise.sh 50 3"
  [wake]="benches/wake.sh 15"
  [up]="benches/up-vs-compose.sh 4 10"
  [spec]="benches/spec-vs-serde_yaml.sh"
  [hold]="benches/router-hold.sh"
  [managed]="benches/managed.sh 5"
)
order=(exec cold router net pool supervise wake up managed spec hold)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${order[@]}")
for n in "${names[@]}"; do
  [ -n "${script[$n]:-}" ] || { echo "bench: unknown bench '$n'; one of: ${order[*]}" >&2; exit 2; }
done

# The peers (root installs them; otherwise say what is missing and go on).
pkgs=(busybox-static bubblewrap runc crun podman podman-compose nginx wrk curl uidmap postgresql redis-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  else
    echo "bench: not root; missing peers are skipped by the benches: ${missing[*]}" >&2
  fi
fi
# The machine, for reading the figures (other load makes everything slower).
echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), uid $(id -u), $(uname -r)" >&2

summary=()
failed=()
for n in "${names[@]}"; do
  echo "== bench $n: ${script[$n]}"
  # shellcheck disable=SC2086 # the script and its arguments
  if out=$(${script[$n]} 2>&1); then
    echo "$out"
    while IFS= read -r l; do summary+=("$n $l"); done < <(grep -E '^(name|tool|size|held)=' <<<"$out" || true)
  else
    echo "$out"
    failed+=("$n")
  fi
done

echo
echo "== figures (medians; ratios measured side by side in this run)"
printf '%-10s %s\n' bench figure
for l in "${summary[@]}"; do
  printf '%-10s %s\n' "${l%% *}" "${l#* }"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
