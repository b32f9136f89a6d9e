# The sample landscape (examples/sample, the README's main command): its vault secret
# SAMPLE_API_TOKEN in the default store (~/.local/share/landscape/vault), encrypted with a
# key file next to it (vault.key, 0600), which `landscape up` uses by default.
# Sourced by scripts/setup.sh (set -euo pipefail). Idempotent.
data_home="${XDG_DATA_HOME:-$HOME/.local/share}/landscape"
key="$data_home/vault.key"
mkdir -p "$data_home"
chmod 700 "$data_home"
if [ ! -s "$key" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key")
fi
cargo build -q --example landscape
cli=target/debug/examples/landscape
if ! "$cli" vault --key-file "$key" get SAMPLE_API_TOKEN >/dev/null 2>&1; then
  head -c 18 /dev/urandom | base64 | tr -d '\n' | "$cli" vault --key-file "$key" set SAMPLE_API_TOKEN
  echo "sample: stored SAMPLE_API_TOKEN in the vault ($data_home/vault, key $key)"
fi
