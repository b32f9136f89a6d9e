#!/usr/bin/env bash
# landscape-k8s: `landscape k8s render` end to end through the real example binary. Renders
# the sample, the showcase (HTTPRoute and Ingress) and every corpus file, validates the YAML
# with `kubernetes-validate --strict` for several Kubernetes versions, and checks that bad
# input prints nothing on stdout and its errors with file:line:col on stderr. Then the
# `apply` feature: the library's apply/diff flow against a tower mock (and against a real
# cluster when KUBECONFIG is set), and `landscape k8s apply` / `diff` through the CLI
# against a fake API server.
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
# Scale-to-zero (KEDA HTTP add-on): the sample, the showcase with Ingress, and the corpus.
render "$tmp/sample-keda.yaml" --keda --keda-idle 2m examples/sample/ci.yml
render "$tmp/showcase-ingress-keda.yaml" --keda --ingress examples/showcase/ci.yml
count=0
for f in ../shared/corpus/codesphere-ci/*.yml; do
  render "$tmp/corpus-$(basename "$f" .yml).yaml" --workspace-id ws1 --dev-domain dev.example --team-id t1 "$f"
  render "$tmp/corpus-keda-$(basename "$f" .yml).yaml" --keda --workspace-id ws1 --dev-domain dev.example --team-id t1 "$f"
  count=$((count + 1))
done
[ "$count" -ge 28 ] || fail "expected the 28 corpus files, rendered $count"

# The warnings of a render carry positions (the showcase's managed Postgres at 58:3).
grep -q "examples/showcase/ci.yml:58:3" "$tmp/showcase.yaml.err" || fail "showcase warning without its position"
# --keda: web (routed at /) gets an HTTPScaledObject and its route goes to the interceptor;
# api and worker (no public paths) are named in a warning at their position.
[ "$(grep -c '^kind: HTTPScaledObject$' "$tmp/sample-keda.yaml")" = 1 ] || fail "sample --keda: want one HTTPScaledObject"
grep -q '^  scaledownPeriod: 120$' "$tmp/sample-keda.yaml" || fail "sample --keda: --keda-idle 2m is not scaledownPeriod 120"
grep -q 'name: keda-add-ons-http-interceptor-proxy' "$tmp/sample-keda.yaml" || fail "sample --keda: route not through the interceptor"
for pos in "examples/sample/ci.yml:30:3" "examples/sample/ci.yml:41:3"; do
  grep -q "$pos" "$tmp/sample-keda.yaml.err" || { cat "$tmp/sample-keda.yaml.err" >&2; fail "sample --keda: no warning at $pos"; }
done
grep -q "k8s-not-scaled-to-zero" "$tmp/sample-keda.yaml.err" || fail "sample --keda: no not-scaled warning"
grep -qx "# note:   kind: ReferenceGrant" "$tmp/sample-keda.yaml" || fail "sample --keda: no ReferenceGrant note"
if "$L" k8s render --keda-idle 5m --image x examples/sample/ci.yml >/dev/null 2>&1; then fail "--keda-idle without --keda accepted"; fi
if "$L" k8s render --keda --keda-idle 5d --image x examples/sample/ci.yml >/dev/null 2>&1; then fail "--keda-idle 5d accepted"; fi

docs=$(cat "$tmp"/*.yaml | grep -c '^---$')
routes=$(cat "$tmp"/*.yaml | grep -c '^kind: HTTPRoute$' || true)
scaled=$(cat "$tmp"/*.yaml | grep -c '^kind: HTTPScaledObject$' || true)
[ "$scaled" -gt 0 ] || fail "no HTTPScaledObject rendered with --keda"
crds=$((routes + scaled))
for v in "${VERSIONS[@]}"; do
  out="$("${KV[@]}" --strict -k "$v" "$tmp"/*.yaml 2>&1)" || { echo "$out" >&2; fail "kubernetes-validate --strict -k $v failed"; }
  passed=$(grep -c '^INFO .* passed for resource' <<<"$out" || true)
  # HTTPRoute and HTTPScaledObject are CRDs: kubernetes-validate has no schema for them and
  # says so (checked by the Rust tests instead). Everything else must have passed.
  [ "$passed" -eq $((docs - crds)) ] || { echo "$out" >&2; fail "$v: $passed of $((docs - crds)) objects passed"; }
  if grep -v "Couldn't find schema for kind HTTP\(Route\|ScaledObject\)" <<<"$out" | grep -qv '^INFO'; then
    echo "$out" >&2; fail "$v: unexpected validator output"
  fi
  echo "kubernetes-validate --strict $v: $passed objects passed ($routes HTTPRoutes and $scaled HTTPScaledObjects not covered)"
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

# Without the k8s-apply feature, apply and diff say how to get them.
set +e
"$L" k8s apply --image x examples/sample/ci.yml >"$tmp/noapply.out" 2>"$tmp/noapply.err"; rc=$?
set -e
[ "$rc" = 2 ] && grep -q -- "--features k8s-apply" "$tmp/noapply.err" || fail "apply without the feature: rc=$rc $(cat "$tmp/noapply.err")"

# The apply flow (tests/apply.rs: a tower mock given to kube::Client; tests/cluster.rs: a
# real cluster, only when KUBECONFIG is set, otherwise it prints why it skips).
cargo test -q -p landscape-k8s --features apply

# The CLI with the feature, against a fake API server (plain HTTP on 127.0.0.1).
cargo build -q --example landscape --features k8s-apply
LA="$tmp/landscape-k8s-apply"
cp "$L" "$LA"
cargo build -q --example landscape # the default binary again, for the suites after this one
python3 landscape-k8s/tests/data/fake_apiserver.py "$tmp/api.log" >"$tmp/api.port" 2>"$tmp/api.err" &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/api.port" ] && break; sleep 0.1; done
port=$(head -1 "$tmp/api.port")
[ -n "$port" ] || fail "fake API server did not start: $(cat "$tmp/api.err")"
cat >"$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:$port"}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
KC
cat >"$tmp/small.yml" <<'YML'
schemaVersion: v0.4
prepare:
  steps:
    - command: echo ready
run:
  web:
    replicas: 2
    steps:
      - command: ./web
    network:
      ports: [{port: 8080}]
      paths: [{port: 8080, path: /}]
YML
k() { KUBECONFIG="$tmp/kubeconfig" "$LA" k8s "$@" --plans "$plans" --image registry.example/workspace:1 --namespace e2e; }
set +e
k diff "$tmp/small.yml" >"$tmp/diff1.out" 2>"$tmp/diff1.err"; rc=$?
set -e
[ "$rc" = 1 ] || { cat "$tmp/diff1.err" >&2; fail "diff of a new landscape exited $rc, want 1"; }
grep -q "^deployment.apps/web would be created" "$tmp/diff1.out" || { cat "$tmp/diff1.out" >&2; fail "diff: no new Deployment"; }
grep -q "^6 to create, 0 to change, 0 to replace, 0 unchanged" "$tmp/diff1.out" || { cat "$tmp/diff1.out" >&2; fail "diff summary"; }
k apply "$tmp/small.yml" >"$tmp/apply.out" 2>"$tmp/apply.err" || { cat "$tmp/apply.err" >&2; fail "apply failed"; }
for line in "phase setup" "namespace/e2e serverside-applied" "job.batch/prepare complete" \
  "httproute.gateway.networking.k8s.io/web serverside-applied" "deployment.apps/web successfully rolled out" \
  "applied 6 objects to namespace e2e"; do
  grep -qx "$line" "$tmp/apply.out" || { cat "$tmp/apply.out" >&2; fail "apply: missing '$line'"; }
done
grep -q "^PATCH /apis/apps/v1/namespaces/e2e/deployments/web?.*fieldManager=landscape.* application/apply-patch+yaml$" "$tmp/api.log" \
  || { cat "$tmp/api.log" >&2; fail "no server-side apply of the Deployment"; }
k diff "$tmp/small.yml" >"$tmp/diff2.out" 2>&1 || { cat "$tmp/diff2.out" >&2; fail "diff after apply found changes"; }
grep -q "^0 to create, 0 to change, 0 to replace, 6 unchanged" "$tmp/diff2.out" || { cat "$tmp/diff2.out" >&2; fail "diff after apply"; }
sed -i 's/replicas: 2/replicas: 3/' "$tmp/small.yml"
set +e
k diff "$tmp/small.yml" >"$tmp/diff3.out" 2>&1; rc=$?
set -e
[ "$rc" = 1 ] && grep -qx -- "  +   replicas: 3" "$tmp/diff3.out" || { cat "$tmp/diff3.out" >&2; fail "diff of an edit: rc=$rc"; }
# The sample's Secret has no value: apply stops after setup and says how to fill it.
before=$(wc -l <"$tmp/api.log")
set +e
k apply examples/sample/ci.yml >"$tmp/secret.out" 2>"$tmp/secret.err"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "create secret generic vault --from-literal=SAMPLE_API_TOKEN=" "$tmp/secret.err" \
  || { cat "$tmp/secret.err" >&2; fail "apply with a missing secret value: rc=$rc"; }
if grep -q "/jobs/" <<<"$(tail -n +$((before + 1)) "$tmp/api.log")"; then fail "a Job was applied without the secret"; fi
# An API server that does not answer: exit 2, an error naming the object.
sed -i "s#127.0.0.1:$port#127.0.0.1:9#" "$tmp/kubeconfig"
set +e
k diff "$tmp/small.yml" >/dev/null 2>"$tmp/down.err"; rc=$?
set -e
[ "$rc" = 2 ] && grep -q "namespace/e2e" "$tmp/down.err" || { cat "$tmp/down.err" >&2; fail "unreachable API server: rc=$rc"; }
echo "k8s apply/diff: ok (tower mock, fake API server through the CLI)"

echo "k8s e2e: ok ($count corpus files, ${#VERSIONS[@]} Kubernetes versions)"
