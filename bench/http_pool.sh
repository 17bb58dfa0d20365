#!/bin/bash
# bench/http_pool.sh: the http transport's overhead (issue 11). Tasks per
# second through an http pool against a server that cannot be the
# bottleneck — Debian's nginx answering a fixed chat completion on loopback —
# next to wrk hitting the same nginx directly with the same number of
# connections, as a ratio, in the same run. A third client, bench/
# curl_baseline (libcurl alone with the pool's options, no scheduler, no
# JSON), shows how much of the gap to wrk is libcurl's own.
#
#   bench/http_pool.sh                  # 16 connections, 3 rounds
#   bench/http_pool.sh -c 8 -n 100000 -r 5 -d 5
#
#   -c N   connections: the pool's max_concurrency and wrk's -c (default 16)
#   -n N   tasks per swarmd run (default 60000)
#   -d S   seconds per wrk run (default 4)
#   -r N   rounds; each runs wrk and swarmd back to back (default 3)
#   -B DIR build directory (default build-bench-http; release, tests off)
#
# nginx runs unprivileged (one worker, no master, a temp prefix, access log
# off, a random loopback port) pinned to the last CPU; wrk (one thread),
# curl_baseline and swarmd (one event loop each) take turns on the first
# one, so all clients get
# the same CPU against the same server. Medians over the rounds are printed,
# and one Markdown row for bench/README.md. Everything started is stopped at
# exit, on an error or Ctrl-C too.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONC=16 TASKS=60000 DUR=4 ROUNDS=3 BUILD="$ROOT/build-bench-http"
while getopts "c:n:d:r:B:h" opt; do
    case "$opt" in
    c) CONC=$OPTARG ;;
    n) TASKS=$OPTARG ;;
    d) DUR=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    B) BUILD=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done

for tool in nginx wrk taskset python3 meson ninja; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "http_pool.sh: $tool not found (scripts/setup installs nginx and wrk)" >&2
        exit 2
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

TMP=$(mktemp -d /tmp/swd-httpbench.XXXXXX)
NGINX_PID=""
cleanup() {
    if [ -n "$NGINX_PID" ]; then
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=disabled >/dev/null
fi
ninja -C "$BUILD" swarmd bench/curl_baseline >/dev/null
SWARMD="$BUILD/swarmd"
BASELINE="$BUILD/bench/curl_baseline"

CPUS=$(nproc)
CLIENT_CPU=0
SERVER_CPU=$((CPUS > 1 ? CPUS - 1 : 0))

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT/v1/chat/completions"
ANSWER='{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$PORT;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$ANSWER';
        }
    }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
    -e "$TMP/nginx/error.log" &
NGINX_PID=$!
for _ in $(seq 100); do
    if curl -s -o /dev/null -X POST -d '{}' "$URL"; then
        break
    fi
    sleep 0.05
done
curl -sf -o /dev/null -X POST -d '{}' "$URL" || { echo "nginx did not start" >&2; exit 1; }

# wrk sends what swarmd sends for a one-line prompt.
BODY='{"messages":[{"role":"user","content":"hello"}],"model":"bench"}'
cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
EOF

cat >"$TMP/workload.yaml" <<EOF
name: http-pool-bench
pools:
  - name: bench
    kind: http
    endpoint: "$URL"
    format: openai
    model: bench
    capabilities: [chat]
    max_concurrency: $CONC
tasks:
  - type: chat
    count: $TASKS
    payload: "hello"
    estimated_tokens: 6
EOF

run_wrk() {
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONC" -d"${DUR}s" -s "$TMP/post.lua" "$URL" |
        awk '/^Requests\/sec:/ {print $2}'
}

run_curl() {
    taskset -c "$CLIENT_CPU" "$BASELINE" "$URL" "$CONC" "$TASKS" | awk '{print $3}'
}

run_swarmd() {
    SWARMD_TUNER_MODE=off taskset -c "$CLIENT_CPU" "$SWARMD" run "$TMP/workload.yaml" \
        --listen 127.0.0.1:0 --http 127.0.0.1:0 --report "$TMP/report.json" >/dev/null 2>"$TMP/run.err" ||
        { echo "swarmd run failed:" >&2; tail -20 "$TMP/run.err" >&2; exit 1; }
    python3 - "$TMP/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["tasks"]
assert t["succeeded"] == t["total"], t
http = r["pools"][0]["http"]
print("%.1f %d %d" % (r["throughput_per_s"], http["connections"], r["wall_ms"]))
PY
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

echo "http_pool.sh: nginx on $URL (CPU $SERVER_CPU); clients on CPU $CLIENT_CPU;" \
    "$CONC connections; $TASKS tasks per swarmd run; wrk ${DUR}s; $ROUNDS rounds" >&2
: >"$TMP/wrk" >"$TMP/curl" >"$TMP/swd"
for r in $(seq "$ROUNDS"); do
    w=$(run_wrk)
    c=$(run_curl)
    read -r s conns wall < <(run_swarmd)
    echo "$w" >>"$TMP/wrk"
    echo "$c" >>"$TMP/curl"
    echo "$s" >>"$TMP/swd"
    printf '  round %d: wrk %8.0f req/s   libcurl %8.0f req/s   swarmd %8.0f tasks/s (%d tasks in %d ms, %d connections)   swarmd/wrk %.2f   swarmd/libcurl %.2f\n' \
        "$r" "$w" "$c" "$s" "$TASKS" "$wall" "$conns" "$(echo "$s / $w" | bc -l)" "$(echo "$s / $c" | bc -l)" >&2
done
W=$(median <"$TMP/wrk")
C=$(median <"$TMP/curl")
S=$(median <"$TMP/swd")
RATIO=$(echo "$S / $W" | bc -l)
CRATIO=$(echo "$C / $W" | bc -l)
SC=$(echo "$S / $C" | bc -l)
printf 'median: wrk %.0f req/s, libcurl alone %.0f req/s (%.2f of wrk), swarmd http pool %.0f tasks/s: %.2f of wrk (target >= 0.80), %.2f of libcurl alone\n' \
    "$W" "$C" "$CRATIO" "$S" "$RATIO" "$SC"
printf '| http pool vs wrk, %d connections, nginx on loopback | %.0f tasks/s | %.0f req/s | %.0f req/s (%.2f×) | %.2f× | %.2f× |\n' \
    "$CONC" "$S" "$W" "$C" "$CRATIO" "$RATIO" "$SC"
