#!/usr/bin/env bash
# landscape-spec parse + validate vs serde_yaml 0.9 into plain serde structs of the same shape,
# on generated landscapes of 10, 200 and 2,000 services; interleaved rounds, medians.
# Prints `size=<n> landscape_mb_s=<x> serde_yaml_mb_s=<y> ratio=<x/y>` per size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p landscape-spec --bench spec_vs_serde_yaml -- "$@" 2>/dev/null | grep -E '^(size=|scaling)'
