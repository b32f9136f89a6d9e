#!/usr/bin/env bash
# Managed Services, time to ready: `landscape up -d` of a landscape with one `provider:
# postgres` and one `provider: redis` until it returns (both ready by their protocol), the
# first time (initdb) and warm (data kept from the last `down`), against the floor: the same
# Debian servers started directly on the host — `initdb` + `pg_ctl start -w` the first time,
# `pg_ctl start -w` warm, and `redis-server` until it answers PING. Medians over ROUNDS warm
# rounds (the first time is measured once per side).
# Prints key=value lines, then:
#   name=managed-first ratio=<landscape / floor>   name=managed-warm ratio=<landscape / floor>
# Target: warm <= 1.2x the floor. Needs root (the floor runs the servers as the postgres
# user), postgresql, redis-server. Benchmark, not a test; not run by CI. Traffic: 127.0.0.1
# and inside the landscape's own network.
# Usage: benches/managed.sh [ROUNDS]   (default 5; env LANDSCAPE_BIN=a built CLI)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
rounds=${1:-5}
case $rounds in '' | *[!0-9]*) echo "managed: ROUNDS must be a number" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "managed: run as root (the floor starts postgres as its own user)" >&2; exit 2; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pgbin/pg_ctl" ] && command -v redis-server >/dev/null \
  || { echo "managed: apt-get install postgresql redis-server" >&2; exit 2; }
# LANDSCAPE_BIN: a CLI built beforehand (default: build the release example here).
landscape_cli
work=$(mktemp -d /tmp/landscape-managed-bench.XXXXXX)
chmod 755 "$work"
pgport=3795 redisport=3796
cleanup() {
  "$L" down --volumes "$work/app" >/dev/null 2>&1 || true
  setpriv --reuid=postgres --regid=postgres --init-groups "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  redis-cli -p "$redisport" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/app"
cat > "$work/app/ci.yml" <<'YAML'
schemaVersion: v0.4
run:
  db:
    provider: {name: postgres, schemaVersion: v1}
    plan: {id: 0}
    config: {userName: app, databaseName: app}
    secrets: {userPassword: bench-user-pw, superuserPassword: bench-super-pw}
  cache:
    provider: {name: redis, schemaVersion: v1}
    plan: {id: 0}
    secrets: {password: bench-redis-pw}
YAML
now() { echo "${EPOCHREALTIME/./}"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) / 1000}'; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

land_up() { "$L" up -d "$work/app" --listen 127.0.0.1:0 >/dev/null 2>&1 || { echo "managed: landscape up failed" >&2; exit 1; }; }
land_down() { "$L" down "$work/app" >/dev/null 2>&1; }
t0=$(now); land_up; t1=$(now); land_down
land_first=$(ms "$t0" "$t1")
land_warm=""
for _ in $(seq "$rounds"); do t0=$(now); land_up; t1=$(now); land_down; land_warm+="$(ms "$t0" "$t1") "; done

# The floor, the same servers on the host.
mkdir -p "$work/pg" "$work/redis" "$work/sock"
chown postgres:postgres "$work/pg" "$work/sock"
pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
redis_up() {
  redis-server --port "$redisport" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes --daemonize yes >/dev/null
  until [ "$(redis-cli -p "$redisport" ping 2>/dev/null)" = PONG ]; do :; done
}
redis_down() { redis-cli -p "$redisport" shutdown >/dev/null 2>&1 || true; }
pg_start() { pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p $pgport -k $work/sock -c listen_addresses=127.0.0.1" -l "$work/sock/pg.log" -w start >/dev/null; }
pg_stop() { pg "$pgbin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null; }
echo bench-super-pw > "$work/pwfile"; chown postgres "$work/pwfile"
t0=$(now)
pg "$pgbin/initdb" -D "$work/pg" -U postgres --pwfile="$work/pwfile" -A scram-sha-256 >/dev/null
pg_start & redis_up; wait
t1=$(now); pg_stop; redis_down
floor_first=$(ms "$t0" "$t1")
floor_warm=""
for _ in $(seq "$rounds"); do t0=$(now); pg_start & redis_up; wait; t1=$(now); pg_stop; redis_down; floor_warm+="$(ms "$t0" "$t1") "; done

lw=$(median "$land_warm") fw=$(median "$floor_warm")
echo "managed: $rounds warm rounds, load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs" >&2
echo "landscape_first_ms=$land_first"
echo "floor_first_ms=$floor_first"
echo "landscape_warm_p50_ms=$lw"
echo "floor_warm_p50_ms=$fw"
echo "name=managed-first ratio=$(awk -v a="$land_first" -v b="$floor_first" 'BEGIN {printf "%.2f", a / b}')"
echo "name=managed-warm ratio=$(awk -v a="$lw" -v b="$fw" 'BEGIN {printf "%.2f", a / b}')"
