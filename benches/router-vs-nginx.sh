#!/usr/bin/env bash
# Router efficiency: the landscape router vs nginx as a reverse proxy, same upstream, same load.
#
#   upstream : nginx serving a small static file (1 worker)
#   proxy A  : nginx, 1 worker, keepalive upstream pool
#   proxy B  : the landscape router, 1 worker thread (landscape-net's `router` example: the
#              same `landscape_net::standalone` code as `landscape router`)
#   load     : wrk (1 thread, 50 connections, keep-alive)
#
# Primary figure: the proxy's CPU time per request = (utime+stime of the proxy's processes from
# /proc/<pid>/stat over the run) / requests. Also req/s and p99 latency from wrk. Runs are
# interleaved (nginx, landscape, nginx, ...) and the medians are printed:
#
#   proxy=<name> cpu_us_per_req=<x> rps=<y> p99_ms=<z>
#   ratio_cpu=<landscape/nginx>
#
# Pinning: the proxy gets CPU 0; upstream and wrk share the other CPU(s) (on a 2-core machine
# that is CPU 1 for both, which caps throughput equally for both proxies; the CPU-per-request
# figure is what compares the proxies).
#
# Not run by CI. Install once (Debian):  apt-get install -y nginx wrk
# The router is built here (release) unless LANDSCAPE_BIN names a binary
#   (e.g. LANDSCAPE_BIN=target/release/examples/landscape, run with `router` as first argument)
# SYSCALLS=1 adds one counted run per proxy and combination (perf stat on the proxy's
# process, root or perf_event_paranoid <= 0): system calls and epoll waits per request,
#   proxy=<name> conns=<c> body=<b> syscalls_per_req=<x> epoll_waits_per_req=<y> task_us_per_req=<z>
# (task time under perf is not the primary figure; the counts are exact).
# Knobs: RUNS (default 5), DURATION (seconds, default 10), CONNS (default 50), BODY (response
# body bytes, default 612). CONNS and BODY may be lists ("1 32 256", "612 65536"): every
# combination is measured with the same servers, and each prints its lines plus
#   name=router-c<CONNS>-b<BODY> ratio=<cpu landscape/nginx> p99_ratio=<p99 landscape/nginx>
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BODY=${BODY:-612}
BIN=${LANDSCAPE_BIN:-target/release/examples/router}
[ -n "${LANDSCAPE_BIN:-}" ] || cargo build -q --release -p landscape-net --example router
for tool in nginx wrk taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y nginx wrk util-linux" >&2; exit 2; }
done
if [ "${SYSCALLS:-0}" = 1 ] && ! command -v perf >/dev/null; then
  echo "SYSCALLS=1 needs perf: apt-get install -y linux-perf" >&2; exit 2
fi
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p landscape-net --example router" >&2; exit 2; }
SUB=()
case "$BIN" in */landscape) SUB=(router) ;; esac

NCPU=$(nproc)
PROXY_CPU=0
if [ "$NCPU" -ge 3 ]; then UP_CPU=1; LOAD_CPU=2-$((NCPU - 1)); else UP_CPU=$((NCPU - 1)); LOAD_CPU=$((NCPU - 1)); fi
TICK=$(getconf CLK_TCK)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port); NGX_PORT=$(free_port); LS_PORT=$(free_port)

mkdir -p "$WORK/www" "$WORK/up" "$WORK/px"
chmod 755 "$WORK"  # nginx workers may run as another user
for b in $BODY; do
  case $b in '' | *[!0-9]*) echo "router-vs-nginx: BODY must be numbers, got '$BODY'" >&2; exit 2 ;; esac
  head -c "$b" /dev/zero | tr '\0' 'x' > "$WORK/www/b$b.html"
done

common_conf() {
  cat <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}

{ common_conf "$WORK/up"; cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up; uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP_PORT; root $WORK/www; }
}
EOF
} > "$WORK/up/nginx.conf"

{ common_conf "$WORK/px"; cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/px; proxy_temp_path $WORK/px; fastcgi_temp_path $WORK/px; uwsgi_temp_path $WORK/px; scgi_temp_path $WORK/px;
  upstream app { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
EOF
} > "$WORK/px/nginx.conf"

cat > "$WORK/ci.yml" <<'EOF'
schemaVersion: v0.2
prepare:
  steps: []
test:
  steps: []
run:
  app:
    steps:
      - command: serve
    network:
      ports:
        - port: 3000
      paths:
        - port: 3000
          path: /
EOF

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; exit 1
}

taskset -c "$UP_CPU" nginx -e "$WORK/up/error.log" -c "$WORK/up/nginx.conf" -p "$WORK/up" &
PIDS+=($!)
taskset -c "$PROXY_CPU" nginx -e "$WORK/px/error.log" -c "$WORK/px/nginx.conf" -p "$WORK/px" &
NGX_MASTER=$!
PIDS+=($NGX_MASTER)
taskset -c "$PROXY_CPU" "$BIN" "${SUB[@]}" --listen "127.0.0.1:$LS_PORT" --threads 1 \
  --upstream "app=127.0.0.1:$UP_PORT" "$WORK/ci.yml" 2> "$WORK/router.log" &
LS_PID=$!
PIDS+=($LS_PID)
wait_port "$UP_PORT"; wait_port "$NGX_PORT"; wait_port "$LS_PORT"

# utime+stime (ticks) of a process and its children processes (nginx master + worker).
cpu_ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    # Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    local f
    f=$(sed 's/.*) //' "/proc/$p/stat")
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# Runs wrk against a port while sampling the proxy's CPU; prints "cpu_us_per_req rps p99_ms".
measure() {
  local port=$1 pid=$2 conns=$3 body=$4 before after out reqs rps p99 unit url
  url="http://127.0.0.1:$port/b$body.html"
  # Warm-up: fill connection pools.
  taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d1s "$url" > /dev/null
  before=$(cpu_ticks "$pid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url")
  after=$(cpu_ticks "$pid")
  if echo "$out" | grep -q "Non-2xx"; then echo "non-2xx responses from port $port:" >&2; echo "$out" >&2; exit 1; fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  # wrk prints us, ms or s.
  p99=$(echo "$p99" | awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}')
  awk -v d=$((after - before)) -v t="$TICK" -v r="$reqs" -v rps="$rps" -v p="$p99" \
    'BEGIN { printf "%.3f %.0f %s\n", d * 1e6 / t / r, rps, p }'
}

# One run under perf stat: "syscalls epoll_waits task_us" per request.
count_syscalls() {
  local port=$1 pid=$2 conns=$3 body=$4 reqs url="http://127.0.0.1:$1/b$4.html"
  perf stat -x, -o "$WORK/perf.csv" \
    -e raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,task-clock \
    -p "$pid" -- taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" "$url" > "$WORK/perf.wrk"
  reqs=$(awk '/requests in/ {print $1}' "$WORK/perf.wrk")
  awk -F, -v r="$reqs" '
    $3 == "raw_syscalls:sys_enter" { s = $1 }
    $3 ~ /epoll_p?wait$/ { e += $1 }
    $3 == "task-clock" { t = $1 }
    END { printf "%.3f %.3f %.3f\n", s / r, e / r, t * 1000 / r }' "$WORK/perf.csv"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: > "$WORK/nginx.txt"; : > "$WORK/landscape.txt"
for conns in $CONNS; do
for body in $BODY; do
: > "$WORK/nginx.txt"; : > "$WORK/landscape.txt"
echo "router-vs-nginx: $conns connections, $body-byte body, $RUNS runs of ${DURATION}s, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq 1 "$RUNS"); do
  n=$(measure "$NGX_PORT" "$NGX_MASTER" "$conns" "$body"); echo "run $i nginx     cpu_us_per_req rps p99_ms = $n" >&2; echo "$n" >> "$WORK/nginx.txt"
  l=$(measure "$LS_PORT" "$LS_PID" "$conns" "$body");      echo "run $i landscape cpu_us_per_req rps p99_ms = $l" >&2; echo "$l" >> "$WORK/landscape.txt"
done

for name in nginx landscape; do
  c=$(awk '{print $1}' "$WORK/$name.txt" | median)
  r=$(awk '{print $2}' "$WORK/$name.txt" | median)
  p=$(awk '{print $3}' "$WORK/$name.txt" | median)
  echo "proxy=$name conns=$conns body=$body cpu_us_per_req=$c rps=$r p99_ms=$p"
  eval "cpu_$name=$c p99_$name=$p"
done
awk -v l="$cpu_landscape" -v n="$cpu_nginx" 'BEGIN { printf "ratio_cpu=%.3f\n", l / n }'
awk -v l="$cpu_landscape" -v n="$cpu_nginx" -v lp="$p99_landscape" -v np="$p99_nginx" -v c="$conns" -v b="$body" \
  'BEGIN { printf "name=router-c%s-b%s ratio=%.3f p99_ratio=%.3f\n", c, b, l / n, (np > 0 ? lp / np : 0) }'
if [ "${SYSCALLS:-0}" = 1 ]; then
  # The nginx worker (the master only waits) and the router itself.
  for who in "nginx $NGX_PORT $(pgrep -P "$NGX_MASTER" | head -n1)" "landscape $LS_PORT $LS_PID"; do
    set -- $who
    read -r sc ew tu < <(count_syscalls "$2" "$3" "$conns" "$body")
    echo "proxy=$1 conns=$conns body=$body syscalls_per_req=$sc epoll_waits_per_req=$ew task_us_per_req=$tu"
  done
fi
done
done
