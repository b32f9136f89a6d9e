#!/usr/bin/env bash
# landscape-runtime: run the runtime's integration tests again as an unprivileged user
# (landscape-test, created by scripts/setup.d/runtime.sh), where the runtime maps the
# container to that user itself and runs without cgroup limits.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The image tests again with the `registry-tls` feature (HTTPS + Basic auth, Bearer tokens;
# real docker-registry), as root here and below as the unprivileged user.
echo "== landscape-runtime images with --features registry-tls"
cargo test -p landscape-runtime --features registry-tls --test images
# Without the registry client (`--no-default-features`: no hyper stack), the crate and its
# unit tests still build and pass, and an image reference names the missing feature.
echo "== landscape-runtime --no-default-features"
cargo test -p landscape-runtime --no-default-features --lib
user=landscape-test
if [ "$(id -u)" -ne 0 ]; then
  echo "runtime.sh: not root; the unprivileged-user run needs root to switch users; skipped"
  exit 0
fi
id -u "$user" >/dev/null
mapfile -t bins < <(cargo test -p landscape-runtime --tests --no-run --message-format=json 2>/dev/null |
  grep '"reason":"compiler-artifact"' | grep '"kind":\["test"\]' | grep -v '"executable":null' |
  sed -E 's/.*"target":\{[^}]*"name":"([^"]+)".*"executable":"([^"]+)".*/\1 \2/')
mapfile -t -O "${#bins[@]}" bins < <(cargo test -p landscape-runtime --features registry-tls --test images --no-run --message-format=json 2>/dev/null |
  grep '"reason":"compiler-artifact"' | grep '"kind":\["test"\]' | grep -v '"executable":null' |
  sed -E 's/.*"target":\{[^}]*"name":"([^"]+)".*"executable":"([^"]+)".*/\1-tls \2/')
[ ${#bins[@]} -gt 0 ] || { echo "runtime.sh: no test executables found"; exit 1; }
dir=$(mktemp -d /tmp/landscape-runtime-tests.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
for entry in "${bins[@]}"; do
  name=${entry%% *}; exe=${entry#* }
  cp "$exe" "$dir/$name"
  chmod 755 "$dir/$name"
done
status=0
for entry in "${bins[@]}"; do
  name=${entry%% *}
  echo "== landscape-runtime test $name as $user"
  (cd "$dir" && setpriv --reuid="$user" --regid="$user" --init-groups \
     env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR=/tmp "$dir/$name") || status=1
done
exit $status
