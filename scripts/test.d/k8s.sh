#!/usr/bin/env bash
# landscape-k8s: `landscape k8s render` end to end through the real example binary. Renders
# the sample, the showcase (HTTPRoute and Ingress) and every corpus file, validates the YAML
# with `kubernetes-validate --strict` for several Kubernetes versions, and checks that bad
# input prints nothing on stdout and its errors with file:line:col on stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --example landscape
L="${CARGO_TARGET_DIR:-target}/debug/examples/landscape"
KV=(python3 -m kubernetes_validate)
VERSIONS=(1.30.0 1.33.0 1.37.0)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "k8s e2e: $*" >&2; exit 1; }
plans=landscape-k8s/tests/data/plans.json

render() { # render OUT ARGS...
  local out="$1"; shift
  "$L" k8s render --plans "$plans" --image registry.example/workspace:1 --namespace e2e "$@" \
    >"$out" 2>"$out.err" || { cat "$out.err" >&2; fail "render $* failed"; }
  grep -q '^kind: Deployment' "$out" || grep -q '^kind: Service' "$out" || fail "render $*: no objects"
}
render "$tmp/sample.yaml" examples/sample/ci.yml
render "$tmp/showcase.yaml" examples/showcase/ci.yml
render "$tmp/showcase-ingress.yaml" --ingress --ingress-class nginx examples/showcase/ci.yml
count=0
for f in ../shared/corpus/codesphere-ci/*.yml; do
  render "$tmp/corpus-$(basename "$f" .yml).yaml" --workspace-id ws1 --dev-domain dev.example --team-id t1 "$f"
  count=$((count + 1))
done
[ "$count" -ge 28 ] || fail "expected the 28 corpus files, rendered $count"

# The warnings of a render carry positions (the showcase's managed Postgres at 58:3).
grep -q "examples/showcase/ci.yml:58:3" "$tmp/showcase.yaml.err" || fail "showcase warning without its position"

docs=$(cat "$tmp"/*.yaml | grep -c '^---$')
crds=$(cat "$tmp"/*.yaml | grep -c '^kind: HTTPRoute$' || true)
for v in "${VERSIONS[@]}"; do
  out="$("${KV[@]}" --strict -k "$v" "$tmp"/*.yaml 2>&1)" || { echo "$out" >&2; fail "kubernetes-validate --strict -k $v failed"; }
  passed=$(grep -c '^INFO .* passed for resource' <<<"$out" || true)
  # HTTPRoute is a CRD: kubernetes-validate has no schema for it and says so (checked by the
  # Rust tests instead). Everything else must have passed.
  [ "$passed" -eq $((docs - crds)) ] || { echo "$out" >&2; fail "$v: $passed of $((docs - crds)) objects passed"; }
  if grep -v "Couldn't find schema for kind HTTPRoute" <<<"$out" | grep -qv '^INFO'; then
    echo "$out" >&2; fail "$v: unexpected validator output"
  fi
  echo "kubernetes-validate --strict $v: $passed objects passed ($crds HTTPRoutes not covered)"
done

# Negative control: the validator does reject an unknown field in strict mode.
sed '0,/^spec:$/s//spec:\n  notAField: 1/' "$tmp/sample.yaml" >"$tmp/broken.yaml.txt"
if "${KV[@]}" --strict -k 1.33.0 --quiet "$tmp/broken.yaml.txt" >/dev/null 2>&1; then
  fail "kubernetes-validate --strict accepted an unknown field"
fi

# Bad input: exit 1, nothing on stdout, each error with file:line:col on stderr.
cat >"$tmp/bad.yml" <<'YML'
schemaVersion: v0.4
run:
  web:
    plan: 99
    steps:
      - command: ./web
  api:
    steps:
      - command: ./api
    env:
      KEY: ${{ vault['my key'] }}
YML
set +e
"$L" k8s render --plans "$plans" "$tmp/bad.yml" >"$tmp/bad.out" 2>"$tmp/bad.err"; rc=$?
set -e
[ "$rc" = 1 ] || fail "bad input exited $rc, want 1"
[ ! -s "$tmp/bad.out" ] || fail "bad input printed to stdout: $(cat "$tmp/bad.out")"
grep -q "bad.yml:4:11" "$tmp/bad.err" || { cat "$tmp/bad.err" >&2; fail "unknown plan not reported at 4:11"; }
# Without the spec's plan check failing first, the translator reports its own errors.
sed -i 's/plan: 99/plan: 8/' "$tmp/bad.yml"
set +e
"$L" k8s render --plans "$plans" "$tmp/bad.yml" >"$tmp/bad.out" 2>"$tmp/bad.err"; rc=$?
set -e
[ "$rc" = 1 ] && [ ! -s "$tmp/bad.out" ] || fail "no image: rc=$rc"
for pos in "bad.yml:3:3" "bad.yml:7:3" "bad.yml:11:12"; do
  grep -q "$pos" "$tmp/bad.err" || { cat "$tmp/bad.err" >&2; fail "missing error at $pos"; }
done
echo "k8s e2e: ok ($count corpus files, ${#VERSIONS[@]} Kubernetes versions)"
