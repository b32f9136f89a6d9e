#!/usr/bin/env bash
# landscape-vault: `landscape vault` end to end through the real example binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Without the OpenBao backend (`--no-default-features`: no hyper stack) the crate builds and
# its tests pass; `--backend openbao` then names the missing feature.
cargo test -q -p landscape-vault --no-default-features
cargo build -q --example landscape
L="${CARGO_TARGET_DIR:-target}/debug/examples/landscape"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export LANDSCAPE_VAULT_DIR="$tmp/store" LANDSCAPE_VAULT_PASSPHRASE="e2e pass phrase" LANDSCAPE_VAULT_KDF="1024,1,1"
fail() { echo "vault e2e: $*" >&2; exit 1; }
value='E2e-Secret-Value-7731'

printf '%s\n' "$value" | "$L" vault --scope team set dbPassword
[ "$("$L" vault --scope team get dbPassword)" = "$value" ] || fail "get returned another value"
"$L" vault --scope team list | grep -q '^dbPassword	version 1' || fail "list"
"$L" vault --scope team list | grep -q "$value" && fail "list printed a value"

cat > "$tmp/ci.yml" <<'YML'
schemaVersion: v0.2
run:
  web:
    plan: 21
    steps:
      - command: npm start
    env:
      DB_PASSWORD: ${{ vault.dbPassword }}
      API_KEY: ${{ vault.apiKey }}
YML
set +e
out="$("$L" vault --scope team check "$tmp/ci.yml" 2>/dev/null)"; rc=$?
set -e
[ "$rc" = 1 ] || fail "check of a missing reference exited $rc, want 1"
[ "$out" = "$tmp/ci.yml:9:16: service \"web\" env API_KEY: vault secret \"apiKey\" is not set in scope \"team\" (or its shared scopes); set it with \`landscape vault set apiKey\`" ] \
  || fail "unexpected check output: $out"
printf 'api-key-value-42' | "$L" vault --scope team set apiKey
"$L" vault --scope team check "$tmp/ci.yml" || fail "check after set"

set +e
err="$(LANDSCAPE_VAULT_PASSPHRASE=wrong "$L" vault --scope team get dbPassword 2>&1 >/dev/null)"; rc=$?
set -e
[ "$rc" = 2 ] && [[ "$err" == *"wrong passphrase or key file"* ]] || fail "wrong passphrase: rc=$rc $err"

"$L" vault --scope team rotate-key
[ "$("$L" vault --scope team get dbPassword)" = "$value" ] || fail "value lost in rotation"
"$L" vault --scope team audit verify | grep -q 'chain intact' || fail "audit verify"

# The value is nowhere on disk in clear, hex or base64.
b64="$(printf '%s' "$value" | base64)"
hexv="$(printf '%s' "$value" | od -An -tx1 | tr -d ' \n')"
if grep -rqaF -e "$value" -e "$b64" -e "$hexv" "$tmp/store"; then fail "a value is stored in clear"; fi
[ "$(stat -c %a "$tmp/store/team/store.lv")" = 600 ] || fail "store file mode"
echo "vault e2e: ok"
