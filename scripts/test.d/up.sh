#!/usr/bin/env bash
# `landscape up` end to end on examples/sample, as root and as the unprivileged
# landscape-test user: every route answers, both api replicas serve (by service name through
# web), a planted vault secret reaches the process but no log file, no output line and no
# `ps` line, a `kill -9` of one api replica is restarted while a bounded load loop sees no
# failed request, and Ctrl-C (SIGINT) leaves no process, network holder or socket behind;
# detached, off-when-unused and image (Managed Containers pulled from a real registry) cases.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --example landscape
user=landscape-test
work=$(mktemp -d /tmp/landscape-up-test.XXXXXX)
chmod 755 "$work"
cp target/debug/examples/landscape "$work/landscape"
chmod 755 "$work/landscape"
pids=()
# forget PID: drop a background process that has been waited for from the cleanup list.
forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
cleanup() {
  # (A background job of a script ignores SIGINT: the registry gets SIGTERM.)
  [ -n "${registry_pid:-}" ] && kill -TERM "$registry_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Background control processes of a failed detached case: SIGTERM is a graceful down.
  pkill -TERM -f "^$work/landscape up" 2>/dev/null || true
  local t=0
  while pgrep -f "^$work/landscape up" >/dev/null && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "up.sh: FAILED: $*"; [ -f "$out" ] && tail -40 "$out"; exit 1; }

# await_line PID FILE PATTERN SECONDS WHAT: polls FILE until PATTERN shows in it; fails
# (as WHAT) when the `landscape up` PID has exited or after SECONDS.
await_line() {
  local pid=$1 file=$2 pattern=$3 secs=$4 what=$5
  local until=$((SECONDS + secs))
  until grep -q "$pattern" "$file"; do
    kill -0 "$pid" 2>/dev/null || fail "$what: up exited early"
    [ $SECONDS -lt $until ] || fail "$what: not in $secs s: $pattern"
    sleep 0.2
  done
}

# run_case NAME PORT [setpriv args...]: everything in a fresh copy of the sample.
run_case() {
  local name=$1 port=$2; shift 2
  local as=("$@")
  local home="$work/$name-home" app="$work/$name/sample"
  mkdir -p "$home" "$work/$name"
  cp -r examples/sample "$app"
  rm -rf "$app/build" "$app/__pycache__"
  local key="$home/vault.key" store="$home/vault"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key"
  chmod 600 "$key"
  local secret
  secret="planted-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$home" "$work/$name"; fi
  # The checkout belongs to a user also when root runs it: it must keep its owner, files
  # the services write included (root: an idmapped mount, no chown).
  chown -R "$user:$user" "$app"
  local envs=(env -i PATH=/usr/bin:/bin HOME="$home" TMPDIR=/tmp)
  printf '%s' "$secret" | "${as[@]}" "${envs[@]}" "$work/landscape" vault --store "$store" --key-file "$key" set SAMPLE_API_TOKEN >/dev/null
  out="$work/$name.out"
  "${as[@]}" "${envs[@]}" "$work/landscape" up "$app" --listen "127.0.0.1:$port" \
    --store "$store" --key-file "$key" > "$out" 2>&1 &
  local up_pid=$!
  pids+=("$up_pid")
  local deadline
  await_line "$up_pid" "$out" "landscape up: ready: http://127.0.0.1:$port/" 90 "$name: ready"
  # Both api replicas answer through web, which calls http://api:3000/ by name.
  local seen="" i
  for i in $(seq 1 20); do
    seen+=$(curl -s --max-time 5 "http://127.0.0.1:$port/" | grep -o '"replica": "api-[01]"' || true)
  done
  [[ "$seen" == *api-0* && "$seen" == *api-1* ]] || fail "$name: both api replicas must answer: $seen"
  # The secret reached the process (its hash is in the answer) ...
  local want
  want=$(printf '%s' "$secret" | sha256sum | cut -c1-12)
  grep -q "$want" <<<"$(curl -s --max-time 5 "http://127.0.0.1:$port/")" || fail "$name: api did not get the secret"
  # ... and no log file, output or ps line (api prints it on purpose: redacted).
  grep -q "api: starting with token \*\*\*" "$out" || fail "$name: the redacted startup line is missing"
  ! grep -q "$secret" "$out" || fail "$name: secret in the output"
  ! grep -qF -- "$secret" <<<"$(ps -eo args)" || fail "$name: secret in ps"
  local logs
  logs=$(find /run/landscape /tmp -path '*landscape*' -name '*.log*' -newer "$key" 2>/dev/null || true)
  [ -n "$logs" ] || fail "$name: no log files found"
  # shellcheck disable=SC2086
  ! grep -ls "$secret" $logs || fail "$name: secret in a log file"
  # kill -9 of one api replica under a bounded load loop: no failed request.
  local victim
  victim=$(grep -o 'api-1 | ready' "$out" >/dev/null && pgrep -f "python3 api.py" | head -1)
  [ -n "$victim" ] || fail "$name: no api process found"
  kill -9 "$victim"
  local failed=0
  for i in $(seq 1 50); do
    curl -s -f --max-time 5 -o /dev/null "http://127.0.0.1:$port/" || failed=$((failed + 1))
  done
  [ "$failed" -eq 0 ] || fail "$name: $failed of 50 requests failed after a replica was killed"
  deadline=$((SECONDS + 30))
  until [ "$(grep -c 'api-[01] | ready' "$out")" -ge 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: killed replica not restarted"
    sleep 0.2
  done
  # restart is rolling: each new replica is ready before its predecessor leaves, so a
  # bounded load loop running through it sees no failed request.
  # (The loop runs until the restart has returned: at most 2000 requests.)
  rm -f "$work/$name-restart.done"
  ( n=0; while [ ! -f "$work/$name-restart.done" ] && [ $n -lt 2000 ]; do
      curl -s -f --max-time 5 -o /dev/null "http://127.0.0.1:$port/" && echo ok || echo fail
      n=$((n + 1))
    done > "$work/$name-restart.load" ) &
  local load=$!
  "${as[@]}" "${envs[@]}" "$work/landscape" restart "$app" api web > "$work/$name-restart.out" 2>&1 \
    || { cat "$work/$name-restart.out"; fail "$name: restart"; }
  touch "$work/$name-restart.done"
  wait "$load"
  grep -q "restarted api, web" "$work/$name-restart.out" || fail "$name: restart said $(cat "$work/$name-restart.out")"
  failed=$(grep -c fail "$work/$name-restart.load" || true)
  [ "$failed" -eq 0 ] || fail "$name: $failed of $(wc -l < "$work/$name-restart.load") requests failed during a restart"
  [ "$(grep -c ok "$work/$name-restart.load")" -ge 10 ] || fail "$name: too few requests during the restart"
  # Ctrl-C: a graceful down that leaves nothing.
  kill -INT "$up_pid"
  wait "$up_pid" || fail "$name: up exited with $?"
  forget "$up_pid"
  ! pgrep -f "$app" >/dev/null || fail "$name: processes left: $(pgrep -af "$app")"
  ! pgrep -f "python3 (api|web|worker).py" >/dev/null || fail "$name: service processes left"
  grep -q "landscape up: stopped" "$out" || fail "$name: no clean stop"
  [ -f "$app/build/index.html" ] || fail "$name: prepare did not write build/index.html"
  local moved
  moved=$(find "$app" \( ! -user "$user" -o ! -group "$user" \) -printf '%u:%g %p\n' | head -5)
  [ -z "$moved" ] || fail "$name: the checkout changed owner: $moved"
  echo "up.sh: $name ok"
}

# Bad input: one clear message each, nothing started.
bad="$work/bad"; mkdir -p "$bad"
set +e
"$work/landscape" up "$bad" > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 2 ] && grep -q "no ci.yml in" "$work/bad.out" || { cat "$work/bad.out"; echo "up.sh: FAILED: missing ci.yml"; exit 1; }
cp examples/sample/broken.yml "$bad/ci.yml"
set +e
"$work/landscape" up "$bad" > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q "nothing was started" "$work/bad.out" || { cat "$work/bad.out"; echo "up.sh: FAILED: broken ci.yml"; exit 1; }
# Two services claiming one name inside the landscape (api's second replica is api-1).
printf 'schemaVersion: v0.4\nrun:\n  api:\n    replicas: 2\n    steps:\n      - command: sleep 100\n  api-1:\n    steps:\n      - command: sleep 100\n' > "$bad/ci.yml"
set +e
"$work/landscape" up "$bad" --listen 127.0.0.1:0 > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'services "api" (line 3:3) and "api-1" (line 7:3) both claim the name "api-1"' "$work/bad.out" \
  && ! pgrep -f "sleep 100" >/dev/null || { cat "$work/bad.out"; echo "up.sh: FAILED: name collision"; exit 1; }
# More replicas than the landscape network has addresses: refused before anything starts.
printf 'schemaVersion: v0.4\nprepare:\n  steps:\n    - command: touch prepared\nrun:\n  web:\n    steps:\n      - command: sleep 100\n  api:\n    replicas: 300\n    steps:\n      - command: sleep 100\n' > "$bad/ci.yml"
set +e
"$work/landscape" up "$bad" --listen 127.0.0.1:0 > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'runs 301 replicas in all, but its network (10.88.0.0/24) has addresses for 251; the largest is service "api" with 300 (line 10:15)' "$work/bad.out" \
  && [ ! -e "$bad/prepared" ] && ! pgrep -f "sleep 100" >/dev/null || { cat "$work/bad.out"; echo "up.sh: FAILED: too many replicas"; exit 1; }
# A failing prepare under -d: its output once (as it came), then the reason, exit 1.
printf 'schemaVersion: v0.4\nprepare:\n  steps:\n    - name: build\n      command: echo first-line; echo last-line; exit 4\nrun:\n  web:\n    steps:\n      - command: sleep 100\n' > "$bad/ci.yml"
set +e
"$work/landscape" up -d "$bad" --listen 127.0.0.1:0 > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && [ "$(grep -c 'last-line' "$work/bad.out")" -eq 1 ] && [ "$(grep -c 'no-route' "$work/bad.out")" -eq 1 ] \
  && grep -q 'prepare step "build" failed with exit code 4; nothing is left running' "$work/bad.out" \
  && ! pgrep -f "^$work/landscape up" >/dev/null || { cat "$work/bad.out"; echo "up.sh: FAILED: failing prepare under -d"; exit 1; }
echo "up.sh: bad input ok"

# A service that keeps crashing once everything else is up: `up` says so with its exit and
# last lines (not "not ready" after the whole --ready-timeout), nothing left running; one
# that crashes only until a slower service is up still comes up.
crash="$work/crash"; mkdir -p "$crash"
printf 'schemaVersion: v0.4\nrun:\n  boom:\n    steps:\n      - command: echo about to fail; exit 3\n    network:\n      ports:\n        - port: 3000\n' > "$crash/ci.yml"
set +e
"$work/landscape" up "$crash" --listen 127.0.0.1:0 --ready-timeout 300 > "$work/crash.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'service "boom": replica 0 keeps crashing (crash loop: exit code 3' "$work/crash.out" \
  && grep -q '^    about to fail' "$work/crash.out" && ! pgrep -f "^$work/landscape up" >/dev/null \
  || { cat "$work/crash.out"; echo "up.sh: FAILED: crash loop"; exit 1; }
# The same for a worker (no port, no probe: "ready" as soon as it runs).
printf 'schemaVersion: v0.4\nrun:\n  typo:\n    steps:\n      - command: echo worker failing; exit 5\n' > "$crash/ci.yml"
set +e
"$work/landscape" up -d "$crash" --listen 127.0.0.1:0 --ready-timeout 300 > "$work/crash.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'service "typo": replica 0 keeps crashing (crash loop: exit code 5' "$work/crash.out" \
  && ! pgrep -f "^$work/landscape up" >/dev/null \
  || { cat "$work/crash.out"; echo "up.sh: FAILED: crash loop of a worker"; exit 1; }
cat > "$crash/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  slow:
    steps:
      - command: rm -f /home/user/app/flag; sleep 2; touch /home/user/app/flag; exec busybox httpd -f -p 3000
    network:
      ports:
        - port: 3000
  late:
    steps:
      - command: test -f /home/user/app/flag || exit 1; exec busybox httpd -f -p 3000
    network:
      ports:
        - port: 3000
YAML
"$work/landscape" up -d "$crash" --listen 127.0.0.1:0 --ready-timeout 60 > "$work/crash.out" 2>&1 \
  || { cat "$work/crash.out"; echo "up.sh: FAILED: a service waiting for a slower one"; exit 1; }
"$work/landscape" down "$crash" > /dev/null
echo "up.sh: crash loop ok"

# Compose habits: the first `vault set` makes the default key file, which `up` then uses; a
# terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches `up` only, which
# stops the services with SIGTERM; an address in use is exit 2 before anything starts, also
# with -d; `up DIR/ci.yml` is `up DIR`; another user's state directory is refused.
sig="$work/sig"; mkdir -p "$sig" "$work/sig-home"
cat > "$sig/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  trap:
    steps:
      - command: trap 'echo INT >> /home/user/app/got; exit 0' INT; trap 'echo TERM >> /home/user/app/got; exit 0' TERM; echo "token $TOKEN"; while :; do sleep 1 & wait $!; done
    env:
      TOKEN: ${{ vault.SIG_TOKEN }}
YAML
sigenv=(env -i PATH=/usr/bin:/bin HOME="$work/sig-home" TMPDIR=/tmp)
printf 'sig-secret-%s' "$RANDOM$RANDOM" | "${sigenv[@]}" "$work/landscape" vault set SIG_TOKEN 2> "$work/sig.out" \
  && grep -q "created the key file $work/sig-home/.local/share/landscape/vault.key" "$work/sig.out" \
  || { cat "$work/sig.out"; echo "up.sh: FAILED: vault set without a key"; exit 1; }
sigport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out="$work/sig.out"
"${sigenv[@]}" setsid "$work/landscape" up "$sig/ci.yml" --listen "localhost:$sigport" > "$out" 2>&1 &
sig_pid=$!
pids+=("$sig_pid")
await_line "$sig_pid" "$out" "landscape up: press Ctrl-C to stop" 60 "signals"
grep -q "trap-0 | token \*\*\*" "$out" || fail "signals: the vault secret did not reach the service"
set +e
"$work/landscape" up -d "$bad" --listen "127.0.0.1:$sigport" > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 2 ] && grep -q "cannot listen on 127.0.0.1:$sigport (--listen): .*nothing was started" "$work/bad.out" \
  && ! grep -q "starting in the background" "$work/bad.out" \
  || { cat "$work/bad.out"; echo "up.sh: FAILED: --listen in use"; exit 1; }
sig_pgid=$(ps -o pgid= -p "$sig_pid" | tr -d ' ')
[ "$sig_pgid" = "$sig_pid" ] || fail "signals: up is not its own process group ($sig_pgid)"
kill -INT -- "-$sig_pgid"
wait "$sig_pid" || fail "signals: up exited with $?"
forget "$sig_pid"
[ "$(cat "$sig/got" 2>/dev/null)" = TERM ] || fail "signals: the service got $(cat "$sig/got" 2>/dev/null | tr '\n' ' '), want TERM only"
uid=$(id -u "$user")
mkdir -p "$work/tmpx/landscape-$uid" && chmod 1777 "$work/tmpx" && chmod 0777 "$work/tmpx/landscape-$uid"
set +e
setpriv --reuid="$user" --regid="$user" --init-groups env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR="$work/tmpx" \
  "$work/landscape" up "$crash" > "$work/bad.out" 2>&1; code=$?
set -e
[ $code -eq 2 ] && grep -q "refusing the state directory $work/tmpx/landscape-$uid: it belongs to uid 0, not to you (uid $uid)" "$work/bad.out" \
  || { cat "$work/bad.out"; echo "up.sh: FAILED: another user's state directory"; exit 1; }
# `down` (a SIGTERM) while `prepare` runs: the step and everything started are stopped,
# exit 1, no network holder or slirp4netns left (they outlive a killed host by design).
printf 'schemaVersion: v0.4\nprepare:\n  steps:\n    - command: echo prepping; sleep 300\nrun:\n  web:\n    steps:\n      - command: sleep 100\n' > "$sig/ci.yml"
out="$work/sig.out"
"$work/landscape" up "$sig" --listen 127.0.0.1:0 > "$out" 2>&1 &
sig_pid=$!
pids+=("$sig_pid")
await_line "$sig_pid" "$out" "prepare | prepping" 60 "stop while starting"
# ps says it is starting; down stops it (SIGTERM to that `up`, then waits for it).
set +e
"$work/landscape" ps "$sig" > "$work/sig-ps.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q "is still starting (or stopping) in .landscape up. pid $sig_pid" "$work/sig-ps.out" \
  || { cat "$work/sig-ps.out"; fail "stop while starting: ps"; }
"$work/landscape" down "$sig" > "$work/sig-down.out" 2>&1 && grep -q "stopped" "$work/sig-down.out" \
  || { cat "$work/sig-down.out"; fail "stop while starting: down"; }
set +e; wait "$sig_pid"; code=$?; set -e
forget "$sig_pid"
[ $code -eq 1 ] && grep -q "stopped before it was up; nothing is left running" "$out" \
  && ! pgrep -f "sleep 300" >/dev/null && ! pgrep -f "^$work/landscape" >/dev/null && ! pgrep -x slirp4netns >/dev/null \
  || fail "stop while starting: rc $code, left: $(pgrep -af "sleep 300|^$work/landscape|slirp4netns")"
# Two `up -d` at once: one comes up, the other is refused and touches nothing of it.
printf 'schemaVersion: v0.4\nprepare:\n  steps:\n    - command: sleep 3\nrun:\n  web:\n    steps:\n      - command: sleep 100\n' > "$sig/ci.yml"
( set +e; "$work/landscape" up -d "$sig" --listen 127.0.0.1:0 > "$work/race1.out" 2>&1; echo "rc=$?" >> "$work/race1.out" ) &
r1=$!
( set +e; "$work/landscape" up -d "$sig" --listen 127.0.0.1:0 > "$work/race2.out" 2>&1; echo "rc=$?" >> "$work/race2.out" ) &
r2=$!
wait "$r1" "$r2"
[ "$(cat "$work/race1.out" "$work/race2.out" | grep -c '^rc=0')" -eq 1 ] \
  && cat "$work/race1.out" "$work/race2.out" | grep -q "is being started or stopped by another .landscape up." \
  && "$work/landscape" ps "$sig" | grep -q "^web .* ready" \
  || { cat "$work/race1.out" "$work/race2.out"; fail "two up -d at once"; }
"$work/landscape" down "$sig" > /dev/null
! pgrep -f "^$work/landscape" >/dev/null || fail "two up -d at once: left $(pgrep -af "^$work/landscape")"
# Apply: a new service is waited for (and stopped again when it does not come up); new
# routes and a changed `prepare` (not run again) are said.
cat > "$sig/ci.yml" <<'YAML'
schemaVersion: v0.4
prepare:
  steps:
    - command: echo first
run:
  web:
    steps:
      - command: mkdir -p /tmp/w && echo web > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /
YAML
"$work/landscape" up -d "$sig" --listen "127.0.0.1:$sigport" --ready-timeout 3 > "$work/apply.out" 2>&1 \
  || { cat "$work/apply.out"; fail "apply: up -d"; }
sed -i 's/echo first/echo second/' "$sig/ci.yml"
cat >> "$sig/ci.yml" <<'YAML'
  echo:
    steps:
      - command: sleep 0.5; mkdir -p /tmp/w && echo echo > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /echo
          stripPath: true
YAML
"$work/landscape" up "$sig" > "$work/apply.out" 2>&1 && grep -q "started: echo" "$work/apply.out" \
  && grep -q "routes changed" "$work/apply.out" && grep -q "prepare changed but not run again" "$work/apply.out" \
  && [ "$(curl -s --max-time 5 "http://127.0.0.1:$sigport/echo/")" = echo ] \
  || { cat "$work/apply.out"; fail "apply: a new routed service"; }
printf '  never:\n    steps:\n      - command: sleep 1000\n    network:\n      ports:\n        - port: 3000\n' >> "$sig/ci.yml"
set +e
"$work/landscape" up "$sig" > "$work/apply.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'new service "never" not ready after 3 s (starting, health check: connect to port 3000: ' "$work/apply.out" \
  && ! "$work/landscape" ps "$sig" | grep -q "^never" && ! pgrep -f "sleep 1000" >/dev/null \
  || { cat "$work/apply.out"; "$work/landscape" ps "$sig"; fail "apply: a new service that never comes up"; }
# A new worker that exits at once: a crash (as at `up`), stopped again.
head -n -6 "$sig/ci.yml" > "$sig/ci.yml.new" && mv "$sig/ci.yml.new" "$sig/ci.yml"
printf '  typo:\n    steps:\n      - command: echo worker typo; exit 7\n' >> "$sig/ci.yml"
set +e
"$work/landscape" up "$sig" > "$work/apply.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'service "typo": replica 0 keeps crashing (crash loop: exit code 7' "$work/apply.out" \
  && ! "$work/landscape" ps "$sig" | grep -q "^typo" \
  || { cat "$work/apply.out"; "$work/landscape" ps "$sig"; fail "apply: a new worker that exits at once"; }
"$work/landscape" down "$sig" > /dev/null
# Not ready in time: the message says what the health check answered.
printf 'schemaVersion: v0.4\nrun:\n  wrong:\n    healthEndpoint: http://localhost:3000/nope\n    steps:\n      - command: mkdir -p /tmp/w && echo x > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w\n    network:\n      ports:\n        - port: 3000\n' > "$sig/ci.yml"
set +e
"$work/landscape" up -d "$sig" --listen 127.0.0.1:0 --ready-timeout 2 > "$work/sig.out" 2>&1; code=$?
set -e
[ $code -eq 1 ] && grep -q 'not ready after 2 s: wrong-0 is starting (health check: GET /nope answered 404)' "$work/sig.out" \
  || { cat "$work/sig.out"; echo "up.sh: FAILED: not ready, with the health check's answer"; exit 1; }
echo "up.sh: signals, defaults and addresses ok"

# gen_ten DIR [VERSION_OF_S3]: a generated 10-service landscape, s0..s9, each busybox
# httpd answering its name at /sN/ (stripPath).
gen_ten() {
  local dir=$1 v3=${2:-v1} i body burst
  mkdir -p "$dir"
  { echo "schemaVersion: v0.4"; echo "run:"
    for i in $(seq 0 9); do
      body="s$i"; [ "$i" -eq 3 ] && body="s3-$v3"
      # s0 first prints a burst of lines (one millisecond): `logs` keeps their order.
      burst=""; [ "$i" -eq 0 ] && burst="for w in zulu alpha mike bravo; do echo order-\$w; done && "
      cat <<YAML
  s$i:
    steps:
      - command: ${burst}mkdir -p /tmp/w && echo $body > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /s$i
          stripPath: true
YAML
    done; } > "$dir/ci.yml"
}

# detached_case NAME PORT [setpriv args...]: `up -d` of the 10-service landscape; every
# route answers; `ps --format json`; an edit of s3 + `up` replaces only s3 while a bounded
# load loop on /s3/ sees no failure; scale; logs; `down` leaves nothing.
detached_case() {
  local name=$1 port=$2; shift 2
  local as=("$@")
  local app="$work/$name-ten/ten" home="$work/$name-ten-home"
  mkdir -p "$home"
  gen_ten "$app"
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$home" "$work/$name-ten"; fi
  local L=("${as[@]}" env -i PATH=/usr/bin:/bin HOME="$home" TMPDIR=/tmp "$work/landscape")
  out="$work/$name-ten.out"
  local admin=$((port + 10))
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" > "$out" 2>&1 || fail "$name: up -d failed"
  grep -q "landscape up: ready: http://127.0.0.1:$port/s9" "$out" || fail "$name: no route printed"
  local i
  for i in $(seq 0 9); do
    [ "$(curl -s --max-time 5 "http://127.0.0.1:$port/s$i/")" = "$( [ $i -eq 3 ] && echo s3-v1 || echo s$i)" ] \
      || fail "$name: /s$i/ did not answer"
  done
  # Prometheus metrics: per-route counts and latency, CPU and memory per replica.
  curl -s --max-time 5 "http://127.0.0.1:$admin/metrics" > "$work/metrics.txt" || fail "$name: /metrics"
  grep -q 'landscape_router_route_duration_seconds_count{route="s4:3000/s4"} 1' "$work/metrics.txt" \
    && grep -Eq 'landscape_replica_memory_bytes\{service="s4",replica="0"\} [1-9]' "$work/metrics.txt" \
    && grep -q 'landscape_replicas{service="s9",state="ready"} 1' "$work/metrics.txt" \
    || { grep -E "route_duration_seconds_count|replica_memory|landscape_replicas" "$work/metrics.txt" | head -20; fail "$name: metrics"; }
  "${L[@]}" ps "$app" --stats --format json | python3 -c 'import json,sys; rows=json.load(sys.stdin); assert len(rows) == 10 and all(r["memory_bytes"] > 0 and r["processes"] >= 1 and r["cpu_percent"] >= 0 for r in rows), rows' \
    || fail "$name: ps --stats"
  "${L[@]}" ps "$app" --format json > "$work/ps.json" || fail "$name: ps"
  python3 - "$work/ps.json" <<'PY' || fail "$name: ps --format json"
import json, sys
rows = json.load(open(sys.argv[1]))
keys = {"service", "replica", "state", "pid", "address", "restarts", "uptime_s", "last_exit"}
assert len(rows) == 10, rows
assert all(set(r) == keys for r in rows), rows
assert all(r["state"] == "ready" and r["pid"] > 0 for r in rows), rows
PY
  local before after
  before=$(python3 -c 'import json,sys; print(" ".join(str(r["service"]) + ":" + str(r["pid"]) for r in json.load(open(sys.argv[1])) if r["service"] != "s3"))' "$work/ps.json")
  # Edit s3, `up` again under load on /s3/.
  gen_ten "$app" v2
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$work/$name-ten"; fi
  local failed=0 n=0
  ( while [ ! -f "$work/stop-load" ] && [ $n -lt 2000 ]; do
      curl -s -f --max-time 5 -o /dev/null "http://127.0.0.1:$port/s3/" || echo fail
      n=$((n + 1))
    done > "$work/load.out" ) &
  local load=$!
  "${L[@]}" up "$app" > "$work/apply.out" 2>&1 || { cat "$work/apply.out"; fail "$name: up (apply) failed"; }
  touch "$work/stop-load"; wait "$load"; rm -f "$work/stop-load"
  failed=$(grep -c fail "$work/load.out" || true)
  [ "$failed" -eq 0 ] || fail "$name: $failed requests failed while s3 was replaced"
  grep -q "replaced (blue-green): s3$" "$work/apply.out" || { cat "$work/apply.out"; fail "$name: s3 not replaced"; }
  [ "$(curl -s --max-time 5 "http://127.0.0.1:$port/s3/")" = "s3-v2" ] || fail "$name: s3 does not serve v2"
  "${L[@]}" ps "$app" --format json > "$work/ps.json"
  after=$(python3 -c 'import json,sys; print(" ".join(str(r["service"]) + ":" + str(r["pid"]) for r in json.load(open(sys.argv[1])) if r["service"] != "s3"))' "$work/ps.json")
  [ "$before" = "$after" ] || fail "$name: unchanged services were restarted: $before -> $after"
  "${L[@]}" scale "$app" s1=2 >/dev/null || fail "$name: scale"
  local deadline=$((SECONDS + 30))
  until [ "$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["service"] == "s1" and r["state"] == "ready"))')" = 2 ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: s1 not scaled to 2"
    sleep 0.2
  done
  # kill -9 of the control process: the replicas go on; the next `up -d` takes them over
  # with the same pids (nothing restarted) and serves the routes again.
  local cpid pids_before pids_after
  cpid=$(sed -n 's/.*control pid \([0-9]*\).*/\1/p' "$out" | head -1)
  [ -n "$cpid" ] || fail "$name: no control pid in the output"
  pids_before=$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; print(sorted((r["service"], r["replica"], r["pid"]) for r in json.load(sys.stdin)))')
  local s0_up
  s0_up=$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; print(next(r["uptime_s"] for r in json.load(sys.stdin) if r["service"] == "s0"))')
  kill -9 "$cpid"
  deadline=$((SECONDS + 10))
  while kill -0 "$cpid" 2>/dev/null; do [ $SECONDS -lt $deadline ] || fail "$name: control process not killed"; sleep 0.05; done
  pgrep -f "busybox httpd -f -p 3000 -h /tmp/w" >/dev/null || fail "$name: the replicas died with the control process"
  "${L[@]}" up -d "$app" > "$work/adopt.out" 2>&1 || { cat "$work/adopt.out"; fail "$name: up -d after kill -9"; }
  grep -q "adopted (same processes): " "$work/adopt.out" || { cat "$work/adopt.out"; fail "$name: nothing adopted"; }
  pids_after=$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; print(sorted((r["service"], r["replica"], r["pid"]) for r in json.load(sys.stdin)))')
  [ "$pids_before" = "$pids_after" ] || fail "$name: re-adoption changed replicas: $pids_before -> $pids_after"
  # The same processes: `ps` goes on counting their uptime from their start.
  "${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; up=next(r["uptime_s"] for r in json.load(sys.stdin) if r["service"] == "s0"); assert up >= float(sys.argv[1]), (up, sys.argv[1])' "$s0_up" \
    || fail "$name: uptime of s0 restarted at the take-over (it was $s0_up s)"
  [ "$(curl -s --max-time 5 "http://127.0.0.1:$port/s5/")" = s5 ] || fail "$name: /s5/ after re-adoption"
  out="$work/adopt.out"
  [ "$("${L[@]}" logs "$app" s0 | grep -o 'order-[a-z]*' | tr '\n' ' ')" = "order-zulu order-alpha order-mike order-bravo " ] \
    || fail "$name: logs reordered lines: $("${L[@]}" logs "$app" s0 --timestamps)"
  "${L[@]}" logs "$app" s3 --timestamps > "$work/logs.out" || fail "$name: logs"
  # busybox httpd logs nothing; the files exist and the command answers for a known service.
  "${L[@]}" logs "$app" nope > /dev/null 2>&1 && fail "$name: logs of an unknown service succeeded"
  local state
  state=$(sed -n 's/.*output in \(.*\)\/up.log).*/\1/p' "$out")
  [ -d "$state" ] || fail "$name: no state directory ($state)"
  "${L[@]}" down "$app" > "$work/down.out" 2>&1 || fail "$name: down"
  ! pgrep -f "busybox httpd -f -p 3000 -h /tmp/w" >/dev/null || fail "$name: processes left after down"
  [ ! -e "$state" ] || fail "$name: state left after down: $state"
  "${L[@]}" ps "$app" >/dev/null 2>&1 && fail "$name: ps on a stopped landscape succeeded"
  "${L[@]}" down "$app" | grep -q "is not running" || fail "$name: down of a stopped landscape"
  echo "up.sh: $name detached 10 services ok"
}

# idle_case NAME PORT [setpriv args...]: off-when-unused through the real router: a routed
# service freezes after 300 ms unused and the next request wakes it (same pid, and that
# first request succeeds); after 1.5 s it is stopped and the next request starts it.
idle_case() {
  local name=$1 port=$2; shift 2
  local as=("$@")
  local app="$work/$name-idle/idle" home="$work/$name-idle-home"
  mkdir -p "$home"
  gen_ten "$app"
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$home" "$work/$name-idle"; fi
  local L=("${as[@]}" env -i PATH=/usr/bin:/bin HOME="$home" TMPDIR=/tmp "$work/landscape")
  out="$work/$name-idle.out"
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" --freeze-after 300ms --stop-after 1500ms --pool 1 > "$out" 2>&1 \
    || fail "$name: up -d with idle periods failed"
  state_of() { "${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["service"] == sys.argv[1]][0]; print(r["state"], r["pid"])' "$1"; }
  # One request first: on a loaded host s1 may have been parked (even stopped) before
  # the last service was ready; the request wakes it and its 300 ms start now.
  [ "$(curl -s -f --max-time 10 "http://127.0.0.1:$port/s1/")" = s1 ] || fail "$name: s1 does not answer"
  local deadline=$((SECONDS + 20)) st
  until st=$(state_of s1) && [ "${st%% *}" = frozen ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: s1 never froze ($st)"
    sleep 0.05
  done
  local frozen_pid=${st#* }
  [ "$(curl -s -f --max-time 5 "http://127.0.0.1:$port/s1/")" = s1 ] || fail "$name: the first request after freezing failed"
  st=$(state_of s1)
  [ "$st" = "ready $frozen_pid" ] || fail "$name: thaw changed the replica: $st (was pid $frozen_pid)"
  deadline=$((SECONDS + 20))
  until st=$(state_of s2) && [ "${st%% *}" = stopped ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: s2 never stopped while unused ($st)"
    sleep 0.05
  done
  [ "$(curl -s -f --max-time 10 "http://127.0.0.1:$port/s2/")" = s2 ] || fail "$name: the first request after stopping failed"
  st=$(state_of s2)
  [ "${st%% *}" = ready ] || fail "$name: s2 not ready after its wake: $st"
  "${L[@]}" down "$app" > /dev/null || fail "$name: down"
  ! pgrep -f "busybox httpd -f -p 3000 -h /tmp/w" >/dev/null || fail "$name: processes left after down"

  # A service parked by the idle policy before the last one is ready still counts as up:
  # `fast` freezes while `slow` waits for a file the test creates only once it has seen
  # `fast` frozen, so `up -d` must return once `slow` is ready.
  local park="$work/$name-park/park"
  mkdir -p "$park"
  cat > "$park/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  fast:
    steps:
      - command: mkdir -p /tmp/w && echo fast > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /fast
          stripPath: true
  slow:
    steps:
      - command: until [ -e go ]; do sleep 0.05; done; mkdir -p /tmp/w && echo slow > /tmp/w/index.html && exec busybox httpd -f -p 3000 -h /tmp/w
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /slow
          stripPath: true
YAML
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$work/$name-park"; fi
  local park_out="$work/$name-park.out"
  "${L[@]}" up -d "$park" --listen "127.0.0.1:$port" --freeze-after 100ms --ready-timeout 30 > "$park_out" 2>&1 &
  local up_pid=$!
  park_state() { "${L[@]}" ps "$park" --format json 2>/dev/null | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["service"] == sys.argv[1]][0]; print(r["state"])' "$1" 2>/dev/null; }
  deadline=$((SECONDS + 20))
  until st=$(park_state fast) && [ "$st" = frozen ]; do
    [ $SECONDS -lt $deadline ] || { kill "$up_pid" 2>/dev/null; fail "$name: fast never froze while slow started ($st)"; }
    sleep 0.05
  done
  touch "$park/go"
  wait "$up_pid" || fail "$name: up -d did not count a parked service as up: $(cat "$park_out")"
  [ "$(curl -s -f --max-time 5 "http://127.0.0.1:$port/slow/")" = slow ] || fail "$name: slow does not answer"
  [ "$(curl -s -f --max-time 5 "http://127.0.0.1:$port/fast/")" = fast ] || fail "$name: the parked service does not wake"
  "${L[@]}" down "$park" > /dev/null || fail "$name: down of the parked landscape"
  echo "up.sh: $name off-when-unused ok"
}

# A busybox image (OCI layout built here: busybox-static, a page, an entrypoint, an
# environment and a user in its config) pushed with skopeo to a real docker-registry on
# 127.0.0.1, for the image case.
registry_pid=
start_registry() {
  local dir="$work/registry" layout="$work/registry/layout"
  mkdir -p "$dir"
  python3 - "$layout" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, h), "wb").write(data)
    return {"digest": "sha256:" + h, "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    def add(name, kind, data=b"", mode=0o755, link=""):
        i = tarfile.TarInfo(name); i.type = kind; i.mode = mode; i.mtime = 1700000000
        i.size = len(data); i.linkname = link
        t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    for d in ["bin", "tmp", "www", "etc"]:
        add(d, tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
    add("bin/busybox", tarfile.REGTYPE, open("/bin/busybox", "rb").read())
    for a in ["sh", "httpd", "id", "echo", "mkdir", "cat"]:
        add("bin/" + a, tarfile.SYMTYPE, link="busybox", mode=0o777)
    add("www/index.html", tarfile.REGTYPE, b"hello from the image\n", mode=0o644)
    add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0::/:/bin/sh\nbox:x:1000:1000::/:/bin/sh\n", mode=0o644)
tar = buf.getvalue()
layer = put(gzip.compress(tar, mtime=0))
layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
config = put(json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
               "Env": ["PATH=/bin", "GREETING=from-image"], "WorkingDir": "/www", "User": "1000:1000"},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": [layer]}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
json.dump({"schemaVersion": 2, "manifests": [manifest]}, open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
PY
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$registry_port
YAML
  /usr/bin/docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  registry_pid=$!
  pids+=("$registry_pid")
  local deadline=$((SECONDS + 20))
  until curl -s -o /dev/null "http://127.0.0.1:$registry_port/v2/"; do
    [ $SECONDS -lt $deadline ] || fail "docker-registry did not start: $(cat "$dir/log")"
    sleep 0.05
  done
  mkdir -p "$dir/skopeo"
  HOME="$dir/skopeo" TMPDIR="$dir/skopeo" REGISTRY_AUTH_FILE="$dir/skopeo/auth.json" \
    skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://127.0.0.1:$registry_port/test/box:1" \
    || fail "skopeo could not push the test image"
}

# image_case NAME PORT [setpriv args...]: Managed Containers from a registry image: one
# runs the image's entrypoint and cmd as the image's user, one runs its own steps with the
# image's shell and an env override; pull progress is shown, the second `up` uses the
# cache; an image that cannot be pulled is one error naming the service, nothing left.
image_case() {
  local name=$1 port=$2; shift 2
  local as=("$@")
  local app="$work/$name-image/app" home="$work/$name-image-home" cache="$work/$name-image-home/cache"
  mkdir -p "$app" "$home"
  local img="127.0.0.1:$registry_port/test/box:1"
  cat > "$app/ci.yml" <<YAML
schemaVersion: v0.4
run:
  box:
    image: $img
    healthEndpoint: http://localhost:8080/
    network:
      ports:
        - port: 8080
      paths:
        - port: 8080
          path: /box
          stripPath: true
  shell:
    image: $img
    runAsUser: 0
    healthEndpoint: tcp://localhost:8081
    env:
      GREETING: overridden
    steps:
      - command: mkdir -p /tmp/w && echo "\$GREETING \$(id -u) \$(cat /www/index.html)" > /tmp/w/index.html && exec httpd -f -p 8081 -h /tmp/w
    network:
      ports:
        - port: 8081
      paths:
        - port: 8081
          path: /shell
          stripPath: true
YAML
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$home" "$work/$name-image"; fi
  local L=("${as[@]}" env -i PATH=/usr/bin:/bin HOME="$home" TMPDIR=/tmp "$work/landscape")
  out="$work/$name-image.out"
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" --image-cache "$cache" > "$out" 2>&1 \
    || fail "$name: up -d of image services failed"
  grep -q "pull | box: $img: downloaded sha256:" "$out" || fail "$name: no pull progress shown"
  [ "$(curl -s -f --max-time 5 "http://127.0.0.1:$port/box/")" = "hello from the image" ] \
    || fail "$name: the image's own command does not serve"
  [ "$(curl -s -f --max-time 5 "http://127.0.0.1:$port/shell/")" = "overridden 0 hello from the image" ] \
    || fail "$name: steps in the image: $(curl -s --max-time 5 "http://127.0.0.1:$port/shell/")"
  local uid
  uid=$(ps -o uid= -p "$(pgrep -f "^/bin/busybox httpd -f -p 8080 -h /www" | head -1)" | tr -d ' ')
  if [ ${#as[@]} -eq 0 ]; then
    # As root, container uid 1000 (the image's User) is subordinate id start + 1000.
    [ "$uid" -eq $(( $(grep -E '^(root|0):' /etc/subuid | head -1 | cut -d: -f2) + 1000 )) ] \
      || fail "$name: box does not run as the image's user (host uid $uid)"
  fi
  "${L[@]}" down "$app" > /dev/null || fail "$name: down"
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" --image-cache "$cache" > "$out" 2>&1 \
    || fail "$name: second up -d failed"
  grep -q "pull | box: $img: using cached image sha256:" "$out" || fail "$name: the second up did not use the cache"
  "${L[@]}" down "$app" > /dev/null || fail "$name: down"
  sed -i "s#test/box:1#test/missing:1#" "$app/ci.yml"
  local rc=0
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" --image-cache "$cache" > "$out" 2>&1 || rc=$?
  [ $rc -eq 1 ] || fail "$name: up with a missing image exited $rc, not 1"
  grep -q "service \"box\": image \"127.0.0.1:$registry_port/test/missing:1\" cannot be used" "$out" \
    || fail "$name: the missing image's error does not name the service and image"
  "${L[@]}" ps "$app" > /dev/null 2>&1 && fail "$name: ps after a failed up finds a landscape"
  ! pgrep -f "httpd -f -p 808" >/dev/null || fail "$name: processes left"
  echo "up.sh: $name image services ok"
}

# managed_case NAME PORT [setpriv args...]: `provider: postgres` and `provider: redis` with
# their passwords from the vault; another service reaches both by name with credentials
# from its env, writes a row and a counter; a wrong password is refused; the row survives a
# kill -9 of the postmaster (restarted by supervision) and `down` + `up`; a bad config key
# is one positioned error and nothing starts; `down --volumes` removes the data; the
# planted superuser password is in no log or state file.
managed_case() {
  local name=$1 port=$2; shift 2
  local as=("$@")
  local app="$work/$name-managed/app" home="$work/$name-managed-home"
  local vdir="$home/.local/share/landscape"
  mkdir -p "$app" "$vdir"
  chmod 700 "$vdir"
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$vdir/vault.key")
  if [ ${#as[@]} -gt 0 ]; then chown -R "$user:$user" "$home" "$work/$name-managed"; fi
  local L=("${as[@]}" env -i PATH=/usr/bin:/bin HOME="$home" TMPDIR=/tmp "$work/landscape")
  local su_pw="Planted-Su-$RANDOM$RANDOM" user_pw="User-$RANDOM$RANDOM" redis_pw="Redis-$RANDOM$RANDOM"
  for kv in "PG_SUPER=$su_pw" "PG_USER=$user_pw" "REDIS_PW=$redis_pw"; do
    printf %s "${kv#*=}" | "${L[@]}" vault --key-file "$vdir/vault.key" set "${kv%%=*}" > /dev/null \
      || fail "$name: vault set ${kv%%=*}"
  done
  cat > "$app/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  db:
    provider:
      name: postgres
      schemaVersion: v1
    plan:
      id: 0
      parameters:
        storage: 512
    config:
      userName: demo
      databaseName: demo
    secrets:
      userPassword: ${{ vault.PG_USER }}
      superuserPassword: ${{ vault.PG_SUPER }}
  cache:
    provider:
      name: redis
      schemaVersion: v1
    plan:
      id: 0
    secrets:
      password: ${{ vault.REDIS_PW }}
  app:
    env:
      PGPASSWORD: ${{ vault.PG_USER }}
      REDISCLI_AUTH: ${{ vault.REDIS_PW }}
    steps:
      - command: >-
          cd /home/user/app &&
          psql -h db -U demo demo -q -v ON_ERROR_STOP=1 -c "create table if not exists t(v text)" -c "insert into t values ('run-$(cat run)')" &&
          { PGPASSWORD=wrong psql -h db -U demo demo -c 'select 1' > wrong.txt 2>&1 || echo refused >> wrong.txt; } &&
          redis-cli -h cache --no-auth-warning INCR runs > redis.txt &&
          psql -h db -U demo demo -Atc "select v from t order by v" > rows.txt.tmp && mv rows.txt.tmp rows.txt &&
          exec sleep 100000
YAML
  out="$work/$name-managed.out"
  run_once() { # N: the N-th up; waits for its rows
    echo "$1" > "$app/run"
    rm -f "$app/rows.txt"
    "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" > "$out" 2>&1 || fail "$name: up -d #$1 with managed services failed"
    local deadline=$((SECONDS + 60))
    until [ -s "$app/rows.txt" ]; do
      [ $SECONDS -lt $deadline ] || fail "$name: the app never wrote its rows (up #$1)"
      sleep 0.05
    done
  }
  run_once 1
  [ "$(cat "$app/rows.txt")" = "run-1" ] || fail "$name: rows after the first up: $(cat "$app/rows.txt")"
  grep -q refused "$app/wrong.txt" && grep -qi "password authentication failed" "$app/wrong.txt" \
    || fail "$name: a wrong password was not refused: $(cat "$app/wrong.txt")"
  [ "$(cat "$app/redis.txt")" = 1 ] || fail "$name: redis INCR: $(cat "$app/redis.txt")"
  # kill -9 of the postmaster: supervision restarts it; the app's next run sees the row.
  local init master
  init=$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; print([x for x in json.load(sys.stdin) if x["service"] == "db"][0]["pid"])')
  master=$(pgrep -P "$init" | head -1)
  [ -n "$master" ] || fail "$name: no postmaster under init $init"
  kill -9 "$master"
  local deadline=$((SECONDS + 60)) st
  until st=$("${L[@]}" ps "$app" --format json | python3 -c 'import json,sys; r=[x for x in json.load(sys.stdin) if x["service"] == "db"][0]; print(r["state"], r["restarts"])') && [ "$st" = "ready 1" ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: postgres not restarted after kill -9 ($st)"
    sleep 0.1
  done
  echo 2 > "$app/run"; rm -f "$app/rows.txt"
  "${L[@]}" restart "$app" app > /dev/null || fail "$name: restart app"
  deadline=$((SECONDS + 60))
  until [ -s "$app/rows.txt" ]; do
    [ $SECONDS -lt $deadline ] || fail "$name: the app never wrote its rows after the postgres restart"
    sleep 0.05
  done
  [ "$(tr '\n' ' ' < "$app/rows.txt")" = "run-1 run-2 " ] || fail "$name: rows after kill -9: $(cat "$app/rows.txt")"
  "${L[@]}" down "$app" > /dev/null || fail "$name: down"
  run_once 3
  [ "$(tr '\n' ' ' < "$app/rows.txt")" = "run-1 run-2 run-3 " ] || fail "$name: rows after down + up: $(cat "$app/rows.txt")"
  [ "$(cat "$app/redis.txt")" = 3 ] || fail "$name: redis data after down + up: $(cat "$app/redis.txt")"
  # Where its state and data live (root: /run/landscape, /var/lib/landscape/data;
  # unprivileged here: $TMPDIR/landscape-UID, ~/.local/share/landscape/data).
  local state data lname
  lname=$(sed -n 's/^landscape up: \(app-[0-9a-f]*\) starting.*/\1/p' "$out" | head -1)
  [ -n "$lname" ] || fail "$name: no landscape name in the output of up"
  if [ ${#as[@]} -eq 0 ]; then
    state=/run/landscape/$lname data=/var/lib/landscape/data/$lname
  else
    state=/tmp/landscape-$(id -u "$user")/$lname data=$home/.local/share/landscape/data/$lname
  fi
  [ -d "$state" ] && [ -d "$data" ] || fail "$name: no state ($state) or data ($data) directory"
  [ "$(stat -c %a "$data")" = 700 ] || fail "$name: the data directory is $(stat -c %a "$data"), not 0700"
  # The planted secrets: in no log or state file, no process's command line.
  for pw in "$su_pw" "$user_pw" "$redis_pw"; do
    ! grep -rqa -- "$pw" "$state" || fail "$name: a managed-service password is in $state"
    ! grep -qa -- "$pw" /proc/[0-9]*/cmdline 2>/dev/null || fail "$name: a managed-service password is on a command line"
  done
  "${L[@]}" down "$app" > /dev/null || fail "$name: down"
  # A bad config key: one positioned error, nothing started.
  sed -i 's/databaseName: demo/databaseNam: demo/' "$app/ci.yml"
  local rc=0
  "${L[@]}" up -d "$app" --listen "127.0.0.1:$port" > "$out" 2>&1 || rc=$?
  [ $rc -eq 1 ] || fail "$name: up with a bad config key exited $rc"
  grep -q "ci.yml:1[0-9]:" "$out" && grep -q "databaseNam" "$out" || fail "$name: the bad key's error is not positioned: $(cat "$out")"
  sed -i 's/databaseNam: demo/databaseName: demo/' "$app/ci.yml"
  "${L[@]}" down --volumes "$app" > "$out" 2>&1 || fail "$name: down --volumes: $(cat "$out")"
  grep -q "removed the data of" "$out" || fail "$name: down --volumes removed nothing: $(cat "$out")"
  [ ! -e "$data" ] || fail "$name: data left after down --volumes: $data"
  ! pgrep -f "postgres -D|redis-server" >/dev/null || fail "$name: servers left running"
  echo "up.sh: $name managed services ok"
}

# UP_CASES="image idle" runs only those cases (default: all).
cases=" ${UP_CASES:-run detached idle image managed} "
registry_port=3790
[[ $cases == *" image "* ]] && start_registry
port=3710
for as in root unprivileged; do
  if [ $as = unprivileged ]; then
    if [ "$(id -u)" -ne 0 ] || ! id -u "$user" >/dev/null 2>&1; then
      echo "up.sh: not root; the unprivileged run needs root to switch users; skipped"
      break
    fi
    set -- setpriv --reuid="$user" --regid="$user" --init-groups
  else
    set --
  fi
  for c in run detached idle image managed; do
    [[ $cases == *" $c "* ]] && "${c}_case" $as $port "$@"
    port=$((port + 2))
  done
  port=3711
done
echo "up.sh: all passed"
