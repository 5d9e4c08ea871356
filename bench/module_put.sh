#!/usr/bin/env bash
# Benchmark: RC.REPLICA.PUT throughput against plain SET on one redis-server with the release module (target: RC.REPLICA.PUT >= 0.85 x SET).
#
# Usage: bench/module_put.sh            (REQUESTS=200000 ROUNDS=3 by default)
#        REQUESTS=50000 ROUNDS=5 bench/module_put.sh
# Runs SET and RC.REPLICA.PUT alternately ROUNDS times each (FLUSHALL and an AOF rewrite between runs),
# prints the median requests/s of each and their ratio. Exits non-zero only when the setup fails
# (build, start, or commands answering errors), never because the target was missed.
set -euo pipefail

REQUESTS=${REQUESTS:-200000}
ROUNDS=${ROUNDS:-3}
CLIENTS=50
VALUE=0123456789abcdef # 16 bytes
TARGET=0.85

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=$ROOT/target/release/librcluster_module.so

die() {
    echo "module_put.sh: $*" >&2
    exit 1
}

for tool in cargo redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "REQUESTS must be a positive integer, got '$REQUESTS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"

echo "building the module (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p rcluster-module) || die "cargo build --release -p rcluster-module failed"
[[ -f $MODULE ]] || die "$MODULE is missing after the build"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-bench.XXXXXX")
REDIS_PID=
cleanup() {
    if [[ -n $REDIS_PID ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# True when something listens on (or answers at) the port.
port_busy() {
    if command -v ss >/dev/null; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

PORT=
start=$((30000 + RANDOM % 30000))
for ((i = 0; i < 500; i++)); do
    candidate=$((30000 + (start - 30000 + i) % 30000))
    if ! port_busy "$candidate"; then
        PORT=$candidate
        break
    fi
done
[[ -n $PORT ]] || die "no free port found from $start"

redis-server "$ROOT/redis.conf" --port "$PORT" --appendonly yes --dir "$TMP" \
    --loadmodule "$MODULE" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!

cli() { redis-cli -p "$PORT" "$@"; }

for ((i = 0; i < 100; i++)); do
    [[ $(cli PING 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis.log" >&2; die "redis-server exited during start-up"; }
    sleep 0.1
done
[[ $(cli PING 2>/dev/null) == PONG ]] || { cat "$TMP/redis.log" >&2; die "redis-server did not answer PING on port $PORT"; }

# The measured commands must succeed: redis-benchmark counts error replies as requests.
[[ $(cli SET key:check "$VALUE") == OK ]] || die "SET fails"
[[ $(cli RC.REPLICA.PUT kcheck "$VALUE" 1 n1 | head -1) == applied ]] || die "RC.REPLICA.PUT fails: $(cli RC.REPLICA.PUT kcheck "$VALUE" 1 n1)"

# errors=N of RC.REPLICA.PUT in INFO rcluster.
put_errors() {
    cli INFO rcluster | tr -d '\r' | sed -n 's/^rcluster_cmd_rc_replica_put:calls=[0-9]*,errors=\([0-9]*\)$/\1/p'
}

# Empties the keyspace and compacts the AOF so every run starts from the same state.
reset() {
    cli FLUSHALL >/dev/null
    cli BGREWRITEAOF >/dev/null
    for ((i = 0; i < 600; i++)); do
        if cli INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0$' &&
            cli INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0$'; then
            return 0
        fi
        sleep 0.1
    done
    die "AOF rewrite did not finish"
}

# Runs one redis-benchmark and prints "rps p50_ms".
bench() {
    local out line
    out=$(redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$REQUESTS" -r 1000000 -q "$@" 2>&1) ||
        die "redis-benchmark failed: $out"
    line=$(tr '\r' '\n' <<<"$out" | grep 'requests per second' | tail -1)
    [[ -n $line ]] || die "no result from redis-benchmark: $out"
    sed -E 's/.*: ([0-9.]+) requests per second(, p50=([0-9.]+) msec)?.*/\1 \3/' <<<"$line"
}

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on port $PORT, appendonly yes," \
    "$CLIENTS clients, $REQUESTS requests x $ROUNDS rounds, ${#VALUE}-byte values" >&2
set_rps=() set_p50=() put_rps=() put_p50=()
for ((round = 1; round <= ROUNDS; round++)); do
    reset
    result=$(bench SET "key:__rand_int__" "$VALUE")
    read -r rps p50 <<<"$result"
    set_rps+=("$rps") set_p50+=("${p50:-0}")
    reset
    before=$(put_errors)
    result=$(bench RC.REPLICA.PUT "k__rand_int__" "$VALUE" "__rand_int__" n1)
    read -r rps2 p502 <<<"$result"
    after=$(put_errors)
    [[ $before == "$after" ]] || die "RC.REPLICA.PUT answered $((after - before)) errors during the run; the figure is not valid"
    put_rps+=("$rps2") put_p50+=("${p502:-0}")
    echo "round $round: SET $rps req/s (p50 ${p50:-?} ms) | RC.REPLICA.PUT $rps2 req/s (p50 ${p502:-?} ms)" >&2
done

SET_RPS=$(median "${set_rps[@]}")
PUT_RPS=$(median "${put_rps[@]}")
awk -v s="$SET_RPS" -v p="$PUT_RPS" -v t="$TARGET" -v sp="$(median "${set_p50[@]}")" -v pp="$(median "${put_p50[@]}")" 'BEGIN {
    printf "SET %.0f req/s | RC.REPLICA.PUT %.0f req/s | ratio %.2f (target >= %.2f)\n", s, p, p / s, t
    printf "p50: SET %.3f ms | RC.REPLICA.PUT %.3f ms\n", sp, pp
}'
