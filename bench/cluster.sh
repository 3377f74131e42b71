#!/usr/bin/env bash
# Client-path benchmark: a 3-node ringkv dev cluster (N=3, QUORUM reads and writes) and a
# redis-server, both on loopback, measured by redis-benchmark in the same run: SET and GET, 50
# clients, without and with a pipeline of 16; then, without a pipeline, INCR on both (a Paxos
# round on ringkv) and compare-and-set (ringkv's RK.CAS against the Lua compare-and-set idiom
# on redis, by EVAL), and INCR of one hot key by every client (INCR1). Prints one JSON object
# per line, then a table of ratios (ringkv / redis).
#
# Both stores run at the same durability, once per mode in DURABILITY (default both):
#   interval  ringkv `--sync-interval-ms 1000` (acknowledge, fsync every second) against
#             redis `appendfsync everysec`: a power loss loses up to a second on either;
#   fsync     ringkv's default (acknowledge after the group-commit fsync) against redis
#             `appendfsync always`.
# ringkv keeps three copies (N=3, QUORUM: two must acknowledge); redis keeps one.
#
#   bench/cluster.sh                  # 100,000 requests per test
#   REQUESTS=20000 bench/cluster.sh   # quicker
#   DURABILITY=fsync bench/cluster.sh # one mode
#   ROUNDS=3 bench/cluster.sh         # three rounds per mode, ringkv and redis alternating
#                                     # test by test; the table shows medians and the range
#                                     # of the per-round ratios
#   PLOT=cluster.svg bench/cluster.sh # also an SVG of throughput (ratio over each test) and
#                                     # p50/p99 per test, and its rows in cluster.jsonl
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
# PLOT names a file from the caller's directory, not the repository root the script moves to.
PLOT=${PLOT:+$(realpath -m -- "$PLOT")}
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
RINGKV_PORT=${RINGKV_PORT:-17379}
REDIS_PORT=${REDIS_PORT:-17400}
DURABILITY=${DURABILITY:-interval fsync}
ROUNDS=${ROUNDS:-1}
for tool in redis-server redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "bench/cluster.sh needs $tool" >&2; exit 1; }
done

cargo build --release -q -p ringkv-net
# Built before the run, so that a build failure does not come after minutes of benchmarking.
[ -z "$PLOT" ] || cargo build --release -q -p ringkv-storage-bench --bin ringkv-bench-plot
work=$(mktemp -d)
stop_servers() {
  [ -n "${ringkv_pid:-}" ] && kill "$ringkv_pid" 2>/dev/null && wait "$ringkv_pid" 2>/dev/null
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  ringkv_pid= redis_pid=
}
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT

start_servers() {
  local mode=$1 ringkv_args=() redis_fsync
  case "$mode" in
    interval) ringkv_args=(--sync-interval-ms 1000) redis_fsync=everysec ;;
    fsync) redis_fsync=always ;;
    *) echo "bench/cluster.sh: unknown durability mode $mode (interval or fsync)" >&2; exit 1 ;;
  esac
  rm -rf "$work/ringkv" "$work/redis"
  mkdir -p "$work/redis"
  "${CARGO_TARGET_DIR:-target}"/release/ringkv dev --nodes 3 --base-port "$RINGKV_PORT" \
    --data-dir "$work/ringkv" "${ringkv_args[@]}" >"$work/ringkv.log" 2>&1 &
  ringkv_pid=$!
  redis-server --port "$REDIS_PORT" --save "" --appendonly yes --appendfsync "$redis_fsync" \
    --dir "$work/redis" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  for port in "$RINGKV_PORT" "$REDIS_PORT"; do
    for _ in $(seq 100); do
      redis-cli -p "$port" PING >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # Wait until the ringkv cluster accepts writes at ALL (every peer connected).
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$RINGKV_PORT" RK.PUT __ready 1 - ALL 2>/dev/null | head -c 1)" != "" ] &&
      ! redis-cli -p "$RINGKV_PORT" RK.PUT __ready 1 - ALL 2>&1 | grep -q -E 'UNAVAILABLE|TIMEOUT|LOADING' && break
    sleep 0.1
  done
}

results="$work/results.jsonl"
# Runs redis-benchmark against one target and appends its rows as JSON. Arguments: target,
# pipeline, mode, round, label ("" keeps redis-benchmark's test names), then its arguments.
bench() {
  local target=$1 pipeline=$2 mode=$3 round=$4 label=$5 port=$RINGKV_PORT
  shift 5
  [ "$target" = redis ] && port=$REDIS_PORT
  # --csv before "$@": redis-benchmark reads every word after a command's name as its argument.
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$REQUESTS" -P "$pipeline" --csv "$@" 2>/dev/null |
    python3 -c '
import csv, json, sys
target, pipeline, mode, round_number, label = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
rows = list(csv.reader(sys.stdin))
header = rows[0]
for row in rows[1:]:
    record = dict(zip(header, row))
    print(json.dumps({"target": target, "test": label or record["test"], "pipeline": pipeline,
                      "rps": float(record["rps"]), "p50_ms": float(record["p50_latency_ms"]),
                      "p99_ms": float(record["p99_latency_ms"]), "durability": mode,
                      "round": round_number}))
' "$target" "$pipeline" "$mode" "$round" "$label" | tee -a "$results"
}

# The compare-and-set keys cas:000000000000 .. exist with value "v" before the CAS test, so
# every RK.CAS cas:__rand_int__ v v applies (a full Paxos round that writes). Redis has no
# compare-and-set command; its peer is the usual Lua idiom, run by EVAL.
CAS_KEYSPACE=${CAS_KEYSPACE:-10000}
REDIS_CAS_SCRIPT="if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) return 1 else return 0 end"
populate_cas_keys() {
  local port=$1
  python3 -c '
import sys
for i in range(int(sys.argv[1])):
    key = "cas:%012d" % i
    sys.stdout.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(key), key))
' "$CAS_KEYSPACE" | redis-cli -p "$port" --pipe >/dev/null
}

for mode in $DURABILITY; do
  start_servers "$mode"
  populate_cas_keys "$RINGKV_PORT"
  populate_cas_keys "$REDIS_PORT"
  for round in $(seq "$ROUNDS"); do
    # ringkv and redis take turns test by test, so that a change in the machine's load between
    # rounds shifts both sides of each ratio alike.
    for pipeline in 1 16; do
      for target in ringkv redis; do
        bench "$target" "$pipeline" "$mode" "$round" "" -r "$KEYSPACE" -d 100 -t set,get
      done
    done
    # Serial (Paxos) operations, without a pipeline: INCR on both, over the keyspace and on one
    # hot key that every client increments (ringkv batches a key's waiting increments into one
    # round); compare-and-set.
    for target in ringkv redis; do
      bench "$target" 1 "$mode" "$round" INCR -r "$KEYSPACE" -t incr
      bench "$target" 1 "$mode" "$round" INCR1 INCR hot:counter
    done
    bench ringkv 1 "$mode" "$round" CAS -r "$CAS_KEYSPACE" RK.CAS cas:__rand_int__ v v
    bench redis 1 "$mode" "$round" CAS -r "$CAS_KEYSPACE" EVAL "$REDIS_CAS_SCRIPT" 1 cas:__rand_int__ v v
  done
  stop_servers
done

python3 - "$results" <<'PY'
import json, sys
from collections import defaultdict
from statistics import median
rows = [json.loads(line) for line in open(sys.argv[1])]
runs = defaultdict(dict)  # (durability, target, test, pipeline) -> round -> row
for r in rows:
    runs[(r["durability"], r["target"], r["test"], r["pipeline"])][r["round"]] = r
print()
print(f'{"durability":<10} {"test":<5} {"pipeline":>8} {"ringkv rps":>12} {"redis rps":>12} {"ratio":>7} {"range":>11} {"ringkv p50":>11} {"ringkv p99":>11} {"redis p99":>10}')
for (mode, target, test, pipeline), ours in sorted(runs.items(), key=lambda item: (item[0][0] != "interval", item[0][1:])):
    theirs = runs.get((mode, "redis", test, pipeline))
    if target != "ringkv" or not theirs:
        continue
    rounds = sorted(set(ours) & set(theirs))
    ratios = [ours[n]["rps"] / theirs[n]["rps"] for n in rounds]
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "-"
    pick = lambda side, field: median(side[n][field] for n in rounds)
    print(f'{mode:<10} {test:<5} {pipeline:>8} {pick(ours, "rps"):>12.0f} {pick(theirs, "rps"):>12.0f} {median(ratios):>7.2f} {spread:>11} {pick(ours, "p50_ms"):>10.3f}ms {pick(ours, "p99_ms"):>10.3f}ms {pick(theirs, "p99_ms"):>9.3f}ms')
PY

if [ -n "$PLOT" ]; then
  # The rows beside the plot, so that it can be redrawn (ringkv-bench-plot FILE.jsonl -o FILE.svg).
  cp "$results" "${PLOT%.svg}.jsonl"
  "${CARGO_TARGET_DIR:-target}"/release/ringkv-bench-plot "$results" -o "$PLOT" \
    --title "bench/cluster.sh: ringkv (3 nodes, N=3, QUORUM) vs redis-server; $CLIENTS clients, $REQUESTS requests, durability ${DURABILITY// /+}, $ROUNDS round(s)"
fi
