#!/usr/bin/env bash
# Benchmark: what request tracing costs. Quorum RC.SET on a local 3-node cluster, three ways: the
# baseline built without the feature, ours with tracing off, ours with every request traced
# (target: ours off >= 0.97 x baseline, i.e. nothing measurable).
#
# Usage: bench/trace.sh                 (REQUESTS=100000 ROUNDS=3 by default)
#        REQUESTS=20000 ROUNDS=1 BASE_BIN_DIR=/path/to/release bench/trace.sh
# The baseline is the release build (rcluster and the module, which must match each other) of
# BASE_REF, by default the commit before module/src/trace.rs was added, built in a temporary git
# worktree into target/bench-base; BASE_BIN_DIR instead names a folder holding an earlier release
# build of both (e.g. another checkout's target/release).
# Starts both clusters (`rcluster up`, N=3 W=2 R=2, on free ports), then ROUNDS rounds of three
# redis-benchmark runs, 50 clients on n1, RC.SET of 16-byte values on -r 100000 keys: the
# baseline, ours with tracing off (rcluster.trace-sample-per-million 0) and ours with it on
# (1000000: every request traced and kept in the ring).
# Prints the median requests/s and p50 of each and the ratios to the baseline. Exits non-zero only
# when the setup fails, never because the target was missed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=${REQUESTS:-100000}
ROUNDS=${ROUNDS:-3}
CLIENTS=50
VALUE=0123456789abcdef # 16 bytes
TARGET=0.97
READY_TIMEOUT_S=90

require_tools cargo git redis-server redis-cli redis-benchmark pgrep
require_positive_int REQUESTS
require_positive_int ROUNDS

build_release

make_tmp trace
CLEANUP_OK="clusters"
install_cleanup

# The baseline's binaries.
if [[ -n ${BASE_BIN_DIR:-} ]]; then
    BASE_RCLUSTER=$BASE_BIN_DIR/rcluster
    BASE_MODULE=$BASE_BIN_DIR/librcluster_module.so
else
    added=$(git -C "$ROOT" log --diff-filter=A --format=%H -- module/src/trace.rs | tail -1)
    BASE_REF=${BASE_REF:-${added:?module/src/trace.rs has no commit; set BASE_REF}^}
    echo "building the baseline ($BASE_REF) in a temporary worktree..." >&2
    git -C "$ROOT" worktree add -q --detach "$TMP/base" "$BASE_REF" || die "git worktree add $BASE_REF failed"
    (cd "$TMP/base" && CARGO_TARGET_DIR=$ROOT/target/bench-base cargo build -q --release -p rcluster -p rcluster-module) ||
        die "building the baseline failed"
    git -C "$ROOT" worktree remove --force "$TMP/base"
    BASE_RCLUSTER=$ROOT/target/bench-base/release/rcluster
    BASE_MODULE=$ROOT/target/bench-base/release/librcluster_module.so
fi
[[ -x $BASE_RCLUSTER && -f $BASE_MODULE ]] || die "no baseline build at $BASE_RCLUSTER and $BASE_MODULE"

# Runs one redis-benchmark of RC.SET on the node at port $1 and prints "rps p50_ms".
bench() {
    local out line
    out=$(redis-benchmark -p "$1" -c "$CLIENTS" -n "$REQUESTS" -r 100000 -q RC.SET "k:__rand_int__" "$VALUE" 2>&1) ||
        die "redis-benchmark failed: $out"
    line=$(tr '\r' '\n' <<<"$out" | grep 'requests per second' | tail -1)
    [[ -n $line ]] || die "no result from redis-benchmark: $out"
    sed -E 's/.*: ([0-9.]+) requests per second(, p50=([0-9.]+) msec)?.*/\1 \3/' <<<"$line"
}

# start BINARY MODULE LABEL: starts a cluster of those binaries on fresh free ports (config
# $TMP/LABEL.yaml, data in $TMP/LABEL) and waits until it is ready; its n1's port is in $N1.
start() {
    pick_ports
    ALL_REDIS_PORTS+=("${REDIS_PORTS[@]}")
    REDIS_PORTS=("${ALL_REDIS_PORTS[@]}")
    N1=${PORTS[0]}
    NODES=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
    write_cluster_yaml "$TMP/$3.yaml" "$3" "$TMP/$3"
    "$1" up --config "$TMP/$3.yaml" --module "$2" >"$TMP/up-$3.out" 2>&1 &
    UP_PID=$!
    wait_cluster_ready "$TMP/up-$3.out" "$3"
    [[ $(cli "$N1" RC.SET k:check "$VALUE" 2>&1) == OK ]] || die "RC.SET fails on the $3 cluster"
}

# sample_all RATE: sets rcluster.trace-sample-per-million on every node of our cluster.
sample_all() {
    local port
    for port in "${OURS[@]}"; do
        [[ $(cli "$port" CONFIG SET rcluster.trace-sample-per-million "$1") == OK ]] || die "CONFIG SET failed on $port"
    done
}

# Both clusters run at once (the baseline's first: its ports are taken when ours are picked),
# and each round measures all three, so both see the same machine.
ALL_REDIS_PORTS=()
start "$BASE_RCLUSTER" "$BASE_MODULE" baseline
BASE_UP=$UP_PID BASE_N1=$N1
BENCH_PIDS+=("$BASE_UP") # cleanup stops it
start "$RCLUSTER" "$MODULE" ours
OURS=("${NODES[@]}")

echo "redis-server $(redis_version), $CLIENTS clients on n1, $REQUESTS RC.SET x $ROUNDS rounds, ${#VALUE}-byte values" >&2
base_rps=() base_p50=() off_rps=() off_p50=() on_rps=() on_p50=()
for ((round = 1; round <= ROUNDS; round++)); do
    read -r rps p50 <<<"$(bench "$BASE_N1")"
    base_rps+=("$rps") base_p50+=("${p50:-0}")
    sample_all 0
    read -r rps p50 <<<"$(bench "$N1")"
    off_rps+=("$rps") off_p50+=("${p50:-0}")
    sample_all 1000000
    read -r rps p50 <<<"$(bench "$N1")"
    on_rps+=("$rps") on_p50+=("${p50:-0}")
done
held=$(cli "$N1" INFO rcluster | tr -d '\r' | sed -n 's/^rcluster_traces_held://p')
[[ ${held:-0} -gt 0 ]] || die "tracing on kept no trace"

base=$(median "${base_rps[@]}")
off=$(median "${off_rps[@]}")
on=$(median "${on_rps[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
printf '%-26s %12s %9s %8s\n' "" "req/s" "p50 ms" "ratio"
printf '%-26s %12s %9s %8s\n' "baseline (no tracing)" "$base" "$(median -d 3 "${base_p50[@]}")" "1.000"
printf '%-26s %12s %9s %8s\n' "ours, tracing off" "$off" "$(median -d 3 "${off_p50[@]}")" "$(ratio "$off" "$base")"
printf '%-26s %12s %9s %8s\n' "ours, every request traced" "$on" "$(median -d 3 "${on_p50[@]}")" "$(ratio "$on" "$base")"
echo "target: tracing off >= $TARGET x baseline; traces held on n1 at the end: $held"
