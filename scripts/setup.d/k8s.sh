# landscape-k8s: `kubernetes-validate` (PyPI) checks the YAML of `landscape k8s render` in
# scripts/test.d/k8s.sh. It bundles the Kubernetes JSON schemas, so it works offline.
# Sourced by scripts/setup.sh (set -euo pipefail).
if python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "kubernetes-validate already installed"
else
  # Debian's system Python is "externally managed" (PEP 668): allow the install there.
  python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes-validate
fi
python3 -m kubernetes_validate --version 2>/dev/null || kubernetes-validate --version
