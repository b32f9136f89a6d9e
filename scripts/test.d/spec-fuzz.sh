#!/usr/bin/env bash
# Fuzz smoke for landscape-spec: each cargo-fuzz target for a short run (stable Rust, no
# sanitizer), seeded with the ci.yml corpus. Longer runs: see README ("Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/../../landscape-spec"
secs="${FUZZ_SECONDS:-20}"
corpus_src="$(cd ../.. && pwd)/shared/corpus/codesphere-ci"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo fuzz build --sanitizer none
for target in parse upgrade roundtrip; do
  mkdir -p "$work/$target"
  if [ "$target" != roundtrip ] && [ -d "$corpus_src" ]; then cp "$corpus_src"/*.yml "$work/$target/"; fi
  echo "== fuzz $target for ${secs}s"
  cargo fuzz run --sanitizer none "$target" "$work/$target" -- \
    -max_len=65536 -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$work/" -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|==|SUMMARY|thread)" || true
  if ls "$work"/crash-* "$work"/oom-* "$work"/timeout-* >/dev/null 2>&1; then
    echo "fuzz target $target found a failing input:" >&2
    ls "$work"/crash-* "$work"/oom-* "$work"/timeout-* >&2 || true
    exit 1
  fi
done
