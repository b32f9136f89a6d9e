#!/usr/bin/env bash
# The statically linked CLI (scripts/build-cli.sh) builds and works: `validate`, and an
# `exec` that writes to the app directory and reads its own hostname.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(./scripts/build-cli.sh --dev target/debug/landscape-static)
# The other suites run target/debug/examples/landscape: put the ordinary build back there.
cargo build -q --example landscape
if readelf -d "$bin" | grep -q NEEDED; then
  echo "cli-static: $bin needs shared libraries:"; readelf -d "$bin" | grep NEEDED; exit 1
fi
"$bin" validate examples/sample/ci.yml >/dev/null
dir=$(mktemp -d /tmp/landscape-cli-static.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
mkdir "$dir/app"
# As root, the container's root is a subordinate id: let it write the app dir.
if [ "$(id -u)" -eq 0 ] && sub=$(grep -E '^(root|0):' /etc/subuid | head -1 | cut -d: -f2); then
  chown "$sub:$sub" "$dir/app"
fi
out=$("$bin" exec --app "$dir/app" -- /bin/sh -c 'echo static > /home/user/app/probe; hostname')
[ "$(cat "$dir/app/probe")" = static ] || { echo "cli-static: the app directory write did not reach the host"; exit 1; }
[ -n "$out" ] || { echo "cli-static: no output from the instance"; exit 1; }
# Exit status passes through.
set +e
"$bin" exec --app "$dir/app" -- /bin/sh -c 'exit 7'
rc=$?
set -e
[ $rc -eq 7 ] || { echo "cli-static: exit status $rc, expected 7"; exit 1; }
echo "cli-static: ok ($bin)"
