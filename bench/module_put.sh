#!/usr/bin/env bash
# Benchmark: RC.REPLICA.PUT throughput against plain SET on one redis-server with the release module (target: RC.REPLICA.PUT >= 0.85 x SET).
#
# Usage: bench/module_put.sh            (REQUESTS=200000 ROUNDS=3 by default)
#        REQUESTS=50000 ROUNDS=5 bench/module_put.sh
# Runs SET and RC.REPLICA.PUT alternately ROUNDS times each (FLUSHALL and an AOF rewrite between runs),
# prints the median requests/s of each and their ratio. Exits non-zero only when the setup fails
# (build, start, or commands answering errors), never because the target was missed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=${REQUESTS:-200000}
ROUNDS=${ROUNDS:-3}
CLIENTS=50
VALUE=0123456789abcdef # 16 bytes
TARGET=0.85

require_tools cargo redis-server redis-cli redis-benchmark
require_positive_int REQUESTS
require_positive_int ROUNDS

cargo_build "the module (release)" --release -p rcluster-module
require_built module

# One redis-server with the module; cleanup stops it (no leftover check: nothing else is started).
make_tmp bench
CHECK_LEFTOVERS=0
install_cleanup

free_ports 1
PORT=${PORTS[0]}
start_redis "$PORT" "$TMP" --loadmodule "$MODULE"
wait_redis "$PORT" redis-server

# The measured commands must succeed: redis-benchmark counts error replies as requests.
[[ $(cli "$PORT" SET key:check "$VALUE") == OK ]] || die "SET fails"
[[ $(cli "$PORT" RC.REPLICA.PUT kcheck "$VALUE" 1 n1 | head -1) == applied ]] || die "RC.REPLICA.PUT fails: $(cli "$PORT" RC.REPLICA.PUT kcheck "$VALUE" 1 n1)"

# errors=N of RC.REPLICA.PUT in INFO rcluster.
put_errors() {
    cli "$PORT" INFO rcluster | tr -d '\r' | sed -n 's/^rcluster_cmd_rc_replica_put:calls=[0-9]*,errors=\([0-9]*\)$/\1/p'
}

# Empties the keyspace and compacts the AOF so every run starts from the same state.
reset() {
    cli "$PORT" FLUSHALL >/dev/null
    cli "$PORT" BGREWRITEAOF >/dev/null
    for ((i = 0; i < 600; i++)); do
        if cli "$PORT" INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0$' &&
            cli "$PORT" INFO persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0$'; then
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

echo "redis-server $(redis_version) on port $PORT, appendonly yes," \
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

SET_RPS=$(median -d 3 "${set_rps[@]}")
PUT_RPS=$(median -d 3 "${put_rps[@]}")
awk -v s="$SET_RPS" -v p="$PUT_RPS" -v t="$TARGET" -v sp="$(median -d 3 "${set_p50[@]}")" -v pp="$(median -d 3 "${put_p50[@]}")" 'BEGIN {
    printf "SET %.0f req/s | RC.REPLICA.PUT %.0f req/s | ratio %.2f (target >= %.2f)\n", s, p, p / s, t
    printf "p50: SET %.3f ms | RC.REPLICA.PUT %.3f ms\n", sp, pp
}'
