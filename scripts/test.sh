#!/usr/bin/env bash
# The test command: sets up a fresh machine, then runs every test of the workspace,
# then the extra suites in scripts/test.d/*.sh (unprivileged runs, fuzz smoke, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The CLI tests run the real `landscape` binary (target/debug/examples/landscape).
cargo build --workspace --examples
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
for f in scripts/test.d/*.sh; do
  [ -f "$f" ] || continue
  echo "== test: $f"
  bash "$f"
done
echo "all tests passed"
