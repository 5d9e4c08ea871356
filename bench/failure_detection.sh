#!/usr/bin/env bash
# Benchmark: failure detection time of the phi-accrual detector on a local 3-node cluster (target: median detection <= 3 heartbeat intervals).
#
# Usage: bench/failure_detection.sh                  (HEARTBEAT_MS=1000 KILLS=10 MODE=node by default)
#        HEARTBEAT_MS=200 KILLS=20 bench/failure_detection.sh
#        MODE=redis bench/failure_detection.sh
# Builds release and starts the three node processes itself (`rcluster node --id nX`, not
# `rcluster up`, which would stop the whole cluster when one node dies), on free ports, with the
# API rate limit raised so n1 can be polled every 10 ms. Then KILLS times:
#   wait until n1 sees n3 alive; kill n3; poll n1's GET /api/nodes every 10 ms until n3 is `down`;
#   record the ms from the kill to the first `suspect` and the first `down` observation; bring n3
#   back and wait until n1 sees it alive again.
# MODE=node:  SIGKILL n3's node process and its redis-server at the same instant (the redis pid
#             comes from n3's /api/health just before); n3 is restarted with `rcluster node --id n3`
#             (same config and data dir).
# MODE=redis: SIGKILL only n3's redis-server; n3's node process reports it down in its next
#             heartbeat and restarts it after supervision.restart_delay_ms (set to 5000 so the down
#             state is observable).
# Prints every kill's times, then the median and max in ms and in heartbeat intervals, and the
# target verdict. Exits non-zero only when the setup fails (build, start, n3 not coming back,
# processes left behind), never because the target was missed. The pieces shared with
# bench/failover.sh (ports, build, config, node start/restart, cleanup, Python helpers) are in
# bench/lib.sh.
set -euo pipefail

HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
KILLS=${KILLS:-10}
MODE=${MODE:-node}
POLL_MS=10
TARGET_INTERVALS=3

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tools cargo redis-server python3 pgrep
require_positive_int HEARTBEAT_MS
((HEARTBEAT_MS >= 100 && HEARTBEAT_MS <= 30000)) || die "HEARTBEAT_MS must be in 100..=30000 (the config's range), got $HEARTBEAT_MS"
require_positive_int KILLS
[[ $MODE == node || $MODE == redis ]] || die "MODE must be 'node' or 'redis', got '$MODE'"

build_release
bench_setup fd
pick_ports

# Redis mode: restart the killed Redis only after 5 s, and never give up restarting it.
SUPERVISION=
[[ $MODE == redis ]] && SUPERVISION="supervision: {restart_on_crash: true, restart_delay_ms: 5000, max_restarts_per_minute: 1000}"
write_config "$HEARTBEAT_MS" "$SUPERVISION"

# The probe: waits for states seen by n1, kills, and times the detection.
cat >"$TMP/probe.py" <<'EOF'
import sys
from rclib import KEY, get, kill_and_poll, main, wait_until

def state(observer_port, node):
    try:
        view = get(observer_port, "/api/nodes", KEY)
    except Exception:
        return None
    for n in view.get("nodes", []):
        if n.get("id") == node:
            return n.get("state")
    return None

def wait(port, node, want, timeout_s):  # wait OBSERVER_PORT NODE STATE TIMEOUT_S
    sys.exit(0 if wait_until(lambda: state(int(port), node) == want, float(timeout_s)) else 1)

def kill(port, node, poll_ms, timeout_s, *pids):  # kill OBSERVER_PORT NODE POLL_MS TIMEOUT_S PID... -> "suspect_ms down_ms" (-1: not seen)
    seen = {"suspect": -1, "down": -1}
    def observe(since):
        s = state(int(port), node)
        if s == "suspect" and seen["suspect"] < 0:
            seen["suspect"] = since()
        if s == "down":
            seen["down"] = since()
            return True
        return False
    kill_and_poll([int(p) for p in pids], int(poll_ms), float(timeout_s), observe)
    print(seen["suspect"], seen["down"])

main({"wait": wait, "kill": kill})
EOF

start_cluster

ALIVE_TIMEOUT_S=$((READY_TIMEOUT_S + 10 * HEARTBEAT_MS / 1000))
DOWN_TIMEOUT_S=$((10 + 20 * HEARTBEAT_MS / 1000)) # 20 intervals and then some: a miss, not a hang
for node in n2 n3; do
    probe wait "${HTTP_PORTS[0]}" "$node" alive "$ALIVE_TIMEOUT_S" || die "n1 does not see $node alive within $ALIVE_TIMEOUT_S s"
done

echo "cluster n1/n2/n3 (redis ports ${REDIS_PORTS[*]}), heartbeat $HEARTBEAT_MS ms, $KILLS kills, mode $MODE" \
    "($([[ $MODE == node ]] && echo "SIGKILL node process + redis-server of n3" || echo "SIGKILL redis-server of n3 only, restarted after 5 s")), n1 polled every $POLL_MS ms" >&2
SUSPECT=() DOWN=() MISSED_DOWN=0
for ((k = 1; k <= KILLS; k++)); do
    probe wait "${HTTP_PORTS[0]}" n3 alive "$ALIVE_TIMEOUT_S" || die "kill $k: n1 does not see n3 alive within $ALIVE_TIMEOUT_S s"
    redis_pid=$(probe health "${HTTP_PORTS[2]}") || die "kill $k: cannot read n3's redis pid"
    kill -0 "$redis_pid" 2>/dev/null || die "kill $k: n3's redis pid $redis_pid is not running"
    if [[ $MODE == node ]]; then
        victims=("${NODE_PIDS[2]}" "$redis_pid")
    else
        victims=("$redis_pid")
    fi
    killing_probe "$([[ $MODE == node ]] && echo 2 || echo -)" kill "${HTTP_PORTS[0]}" n3 "$POLL_MS" "$DOWN_TIMEOUT_S" "${victims[@]}" ||
        die "kill $k: the probe failed"
    read -r suspect down <<<"$PROBE_OUT"
    if ((down < 0)); then
        MISSED_DOWN=$((MISSED_DOWN + 1))
        down_text="not down within $DOWN_TIMEOUT_S s"
    else
        DOWN+=("$down")
        down_text="down after $down ms ($(awk -v d="$down" -v h="$HEARTBEAT_MS" 'BEGIN { printf "%.2f", d / h }') intervals)"
    fi
    if ((suspect < 0)); then
        suspect_text="never seen suspect"
    else
        SUSPECT+=("$suspect")
        suspect_text="suspect after $suspect ms"
    fi
    printf 'kill %2d: %-26s %s\n' "$k" "$suspect_text," "$down_text"
    if [[ $MODE == node ]]; then
        restart_node 2 "$redis_pid" "kill $k"
    fi
done
probe wait "${HTTP_PORTS[0]}" n3 alive "$ALIVE_TIMEOUT_S" || die "n1 does not see n3 alive again within $ALIVE_TIMEOUT_S s after the last kill"


echo
echo "mode $MODE, heartbeat $HEARTBEAT_MS ms, $KILLS kills, n1 polled every $POLL_MS ms (times are from the SIGKILL to n1's first answer showing the state)"
summary() {
    local what=$1
    shift
    if (($# == 0)); then
        printf '%-10s never observed\n' "$what:"
        return
    fi
    awk -v w="$what" -v med="$(median "$@")" -v max="$(maximum "$@")" -v h="$HEARTBEAT_MS" -v n=$# 'BEGIN {
        printf "%-10s median %7.1f ms (%.2f intervals)  max %6d ms (%.2f intervals)  [%d kills]\n", w ":", med, med / h, max, max / h, n }'
}
summary suspect "${SUSPECT[@]}"
summary down "${DOWN[@]}"
((MISSED_DOWN == 0)) || echo "down never observed after $MISSED_DOWN of $KILLS kills (counted as above the target)"
if ((${#DOWN[@]} == 0)); then
    echo "target: median <= $TARGET_INTERVALS intervals: MISSED (n3 was never seen down)"
else
    # Kills where down was never seen count as infinitely slow in the median.
    all=("${DOWN[@]}")
    for ((m = 0; m < MISSED_DOWN; m++)); do all+=(1e18); done
    med=$(median "${all[@]}")
    awk -v m="$med" -v h="$HEARTBEAT_MS" -v t="$TARGET_INTERVALS" -v lim="$DOWN_TIMEOUT_S" 'BEGIN {
        if (m / 1000 > lim) { printf "target: median <= %d intervals: MISSED (the median kill was not seen down within %d s)\n", t, lim; exit }
        printf "target: median <= %d intervals: %s (%.2f intervals)\n", t, (m / h <= t ? "met" : "MISSED"), m / h }'
fi
