#!/usr/bin/env bash
# Installs every system package and tool the tests need, on a fresh Debian machine (as root).
# Idempotent. Crate-specific steps live in scripts/setup.d/*.sh and are sourced here.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(ca-certificates git)
for f in scripts/setup.d/*.apt; do
  [ -f "$f" ] && mapfile -t -O "${#APT_PACKAGES[@]}" APT_PACKAGES < <(grep -v '^#' "$f" | grep -v '^$')
done
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for f in scripts/setup.d/*.sh; do
  [ -f "$f" ] || continue
  echo "== setup: $f"
  # shellcheck disable=SC1090
  source "$f"
done
