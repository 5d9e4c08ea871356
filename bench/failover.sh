#!/usr/bin/env bash
# Benchmark: Raft leader failover time on a local 3-node cluster when the leader dies (target: median < 500 ms).
#
# Usage: bench/failover.sh            (KILLS=20 by default)
#        KILLS=50 bench/failover.sh
# Builds release and starts the three node processes itself (`rcluster node --id nX`, not
# `rcluster up`, which would stop the whole cluster when one node dies), on free ports, heartbeat
# 1000 ms (Raft's own timing: 10 ms ticks, election timeout 150-300 ms), with the API rate limit
# raised so the nodes can be polled every 10 ms. Then KILLS times:
#   wait until all three nodes' GET /api/cluster name the same Raft leader; SIGKILL that leader's
#   node process and its redis-server at the same instant (the redis pid comes from its
#   /api/health just before); poll the two survivors' GET /api/cluster every 10 ms until both
#   name the same leader that is not the dead node; record the ms from the kill to that answer;
#   restart the dead node (`rcluster node --id nX`, same config and data dir) and wait until all
#   three agree on a leader again.
# Prints every kill's time, old and new leader and term, then the median, p90 (nearest rank) and max in
# ms, and the target verdict. A kill with no new leader within FAILOVER_TIMEOUT_S counts as
# infinitely slow. Exits non-zero only when the setup fails (build, start, a node not coming back,
# the cluster not agreeing on a leader, processes left behind), never because the target was
# missed. Shared pieces (ports, build, config, node start/restart, cleanup, Python helpers) are in
# bench/lib.sh.
set -euo pipefail

KILLS=${KILLS:-20}
HEARTBEAT_MS=1000 # >= 2000 would scale Raft's ticks (ClusterConfig::raft_tick_scale)
POLL_MS=10
TARGET_MS=500
FAILOVER_TIMEOUT_S=30 # a miss, not a hang

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tools cargo redis-server python3 pgrep
require_positive_int KILLS

build_release
bench_setup failover
pick_ports
write_config "$HEARTBEAT_MS"

# The probe: waits for the nodes to agree on a leader, kills it, and times the failover.
cat >"$TMP/probe.py" <<'EOF'
import sys
from rclib import KEY, get, kill_and_poll, main, wait_until

def raft(port):
    try:
        return get(int(port), "/api/cluster", KEY).get("raft") or {}
    except Exception:
        return {}

def common_leader(ports, not_this=None):
    """(leader, term) when every port names the same leader (other than not_this), else None."""
    views = [raft(p) for p in ports]
    leaders = {v.get("leader") for v in views}
    if len(leaders) != 1:
        return None
    leader = leaders.pop()
    if leader is None or leader == not_this:
        return None
    return leader, max(v.get("term", 0) for v in views)

def agree(timeout_s, *ports):  # agree TIMEOUT_S PORT... -> "leader term"
    got = wait_until(lambda: common_leader(ports), float(timeout_s))
    if not got:
        sys.exit(f"no common leader within {timeout_s} s: " + ", ".join(str(raft(p)) for p in ports))
    print(*got)

def failover(dead, poll_ms, timeout_s, survivors, *pids):  # failover DEAD POLL_MS TIMEOUT_S PORT,PORT PID... -> "ms leader term" (-1 - -: none)
    ports = survivors.split(",")
    result = [-1, "-", "-"]
    def observe(since):
        got = common_leader(ports, dead)
        if got:
            result[:] = [since(), got[0], got[1]]
        return bool(got)
    kill_and_poll([int(p) for p in pids], int(poll_ms), float(timeout_s), observe)
    print(*result)

main({"agree": agree, "failover": failover})
EOF

start_cluster

# Waits until all three nodes name the same leader; sets LEADER (its index, 0 for n1) and TERM.
common_leader() {
    local out leader
    out=$(probe agree "$READY_TIMEOUT_S" "${HTTP_PORTS[@]}") || die "$1: the nodes do not agree on a leader within $READY_TIMEOUT_S s"
    read -r leader TERM <<<"$out"
    [[ $leader =~ ^n[123]$ ]] || die "$1: unexpected leader id '$leader'"
    LEADER=$((${leader#n} - 1))
}

echo "cluster n1/n2/n3 (redis ports ${REDIS_PORTS[*]}), heartbeat $HEARTBEAT_MS ms, $KILLS kills" \
    "(SIGKILL node process + redis-server of the leader), survivors polled every $POLL_MS ms" >&2
TIMES=() MISSED=0
for ((k = 1; k <= KILLS; k++)); do
    common_leader "kill $k"
    i=$LEADER
    dead=n$((i + 1))
    redis_pid=$(probe health "${HTTP_PORTS[i]}") || die "kill $k: cannot read $dead's redis pid"
    kill -0 "$redis_pid" 2>/dev/null || die "kill $k: $dead's redis pid $redis_pid is not running"
    kill -0 "${NODE_PIDS[i]}" 2>/dev/null || die "kill $k: $dead's node process ${NODE_PIDS[i]} is not running"
    survivors=()
    for j in 0 1 2; do ((j == i)) || survivors+=("${HTTP_PORTS[j]}"); done
    killing_probe "$i" failover "$dead" "$POLL_MS" "$FAILOVER_TIMEOUT_S" "${survivors[0]},${survivors[1]}" \
        "${NODE_PIDS[i]}" "$redis_pid" || die "kill $k: the probe failed"
    read -r ms leader term <<<"$PROBE_OUT"
    if ((ms < 0)); then
        MISSED=$((MISSED + 1))
        printf 'kill %2d: leader %s (term %s) killed, no new leader within %d s\n' "$k" "$dead" "$TERM" "$FAILOVER_TIMEOUT_S"
    else
        TIMES+=("$ms")
        printf 'kill %2d: leader %s (term %s) killed, %s leads (term %s) after %4d ms\n' "$k" "$dead" "$TERM" "$leader" "$term" "$ms"
    fi
    restart_node "$i" "$redis_pid" "kill $k"
done
common_leader "after the last kill"

echo
echo "$KILLS kills of the Raft leader, survivors polled every $POLL_MS ms (times are from the SIGKILL to the first poll where both survivors name the same new leader)"
((MISSED == 0)) || echo "no new leader within $FAILOVER_TIMEOUT_S s after $MISSED of $KILLS kills (counted as infinitely slow)"
if ((${#TIMES[@]} == 0)); then
    echo "target: median < $TARGET_MS ms: MISSED (no new leader was ever seen)"
    exit 0
fi
all=("${TIMES[@]}")
for ((m = 0; m < MISSED; m++)); do all+=(1e18); done
med=$(median "${all[@]}") p90=$(percentile 90 "${all[@]}") max=$(maximum "${all[@]}")
awk -v med="$med" -v p90="$p90" -v max="$max" -v n=${#TIMES[@]} 'BEGIN {
    f = "%.0f ms"; inf = "no new leader"
    printf "failover: median %s  p90 %s  max %s  [%d kills with a new leader]\n",
        (med > 1e17 ? inf : sprintf("%.1f ms", med)), (p90 > 1e17 ? inf : sprintf(f, p90)), (max > 1e17 ? inf : sprintf(f, max)), n }'
awk -v m="$med" -v t="$TARGET_MS" 'BEGIN { printf "target: median < %d ms: %s\n", t, (m < t ? "met" : "MISSED") }'
