#!/usr/bin/env bash
# bench/dial_cost.sh [TREE]: instructions per dial (callgrind), clicktocall against bench/raw_curl.c,
# both against one local nginx answering the dial at once. Repeatable where wall-clock on a shared
# machine is not: each contender runs N1 and N2 calls, and (Ir(N2) - Ir(N1)) / (N2 - N1) leaves out
# the start (loading Lua, libcurl, the first connection). TREE: a built clicktocall tree (default ".").
#
# bench/dial_cost.sh --wall ROUNDS [TREE [BEFORE_TREE]]: dials per second instead, as each program counts
# them (10,000 after its start), alternating raw / TREE [/ BEFORE_TREE] a round; the client pinned to CPU 0
# and nginx to CPU 1, so the two do not take turns on one core (unpinned, rounds vary by ±15 %).
set -euo pipefail
WALL=0
if [[ ${1:-} == --wall ]]; then
  WALL=$2
  shift 2
fi
TREE=$(cd "${1:-.}" && pwd)
BEFORE=${2:+$(cd "$2" && pwd)}
N1=${CTC_DIAL_N1:-1000} N2=${CTC_DIAL_N2:-3000}
WORK=$(mktemp -d /tmp/ctc-dial-cost.XXXXXX)
cleanup() {
  [[ -f $WORK/logs/nginx.pid ]] && kill -QUIT "$(cat "$WORK/logs/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PIN0= PIN1=
if [[ $WALL != 0 ]]; then PIN0="taskset -c 0" PIN1="taskset -c 1"; fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/logs" "$WORK/tmp"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/logs/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$PORT;
    default_type 'application/json;charset=UTF-8';
    location = /ping { return 200 'ok'; }
    location = /rest/voiceCall/api {
      return 200 '{"meta":{"success":true,"message":"ok"},"data":"3f7c1a2e-5b6d-4e8f-9a0b-1c2d3e4f5a6b_300000001"}';
    }
  }
}
CONF
$PIN1 "${CTC_NGINX:-nginx}" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/logs/error.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/ping" && break; sleep 0.1; done
cc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -o "$WORK/raw_curl" "$TREE/bench/raw_curl.c" -lcurl
URL=http://127.0.0.1:$PORT
BODY='{"callerNbr":"+8613500000002","calleeNbr":"+8613918000010",'
BODY+='"userData":"4e2239c5-a6e6-4201-a072-8342e29c3ae3","setingNbr":"PP1"}'
AUTH=$(printf %s TEST | base64)
if [[ $WALL != 0 ]]; then
  N=${CTC_DIAL_N:-10000}
  rate() { $PIN0 "$@" "$N" | cut -d. -f1; }
  for i in $(seq "$WALL"); do
    line="$i raw $(rate "$WORK/raw_curl" "$URL/rest/voiceCall/api" "$BODY" "$AUTH")"
    line+=" ctc $(cd "$TREE" && CTC_BENCH_ROOT=$TREE rate lua5.4 bench/small.lua ctc dial "$URL")"
    if [[ -n $BEFORE ]]; then
      line+=" before $(cd "$BEFORE" && CTC_BENCH_ROOT=$BEFORE rate lua5.4 bench/small.lua ctc dial "$URL")"
    fi
    echo "$line"
  done | tee "$WORK/rounds"
  for who in ctc before; do
    awk -v w=$who '{ for (i = 2; i < NF; i += 2) v[$i] = $(i + 1); if (v[w] != "") print v[w] / v["raw"] }' \
      "$WORK/rounds" | sort -g >"$WORK/ratios"
    [[ -s $WORK/ratios ]] || continue
    awk -v w=$who '{ r[NR] = $1 } END { printf "%s / raw, per round: median %.3f, lowest %.3f, highest %.3f\n", w,
      NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2, r[1], r[NR] }' "$WORK/ratios"
  done
  exit 0
fi
ir() { # command... -> instructions
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$@" >/dev/null 2>"$WORK/cg.err"
  grep -o 'Collected : [0-9]*' "$WORK/cg.err" | grep -o '[0-9]*$'
}
per_call() { # label command-with-N-last...
  local label=$1 a b
  shift
  a=$(ir "$@" "$N1")
  b=$(ir "$@" "$N2")
  echo "$label $(( (b - a) / (N2 - N1) ))"
}
raw=$(per_call raw "$WORK/raw_curl" "$URL/rest/voiceCall/api" "$BODY" "$AUTH")
# raw_curl takes N last; small.lua takes it last too
ctc=$(cd "$TREE" && CTC_BENCH_ROOT=$TREE per_call ctc lua5.4 bench/small.lua ctc dial "$URL")
echo "$raw"
echo "$ctc"
awk -v r="${raw#raw }" -v c="${ctc#ctc }" 'BEGIN { printf "instructions ratio raw/ctc %.3f\n", r / c }'
