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
# processes left behind), never because the target was missed.
set -euo pipefail

HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
KILLS=${KILLS:-10}
MODE=${MODE:-node}
POLL_MS=10
TARGET_INTERVALS=3
READY_TIMEOUT_S=60

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RCLUSTER=$ROOT/target/release/rcluster
MODULE=$ROOT/target/release/librcluster_module.so
READ_KEY=dev-read-key-change-me

die() {
    echo "failure_detection.sh: $*" >&2
    exit 1
}

for tool in cargo redis-server python3 pgrep; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ $HEARTBEAT_MS =~ ^[1-9][0-9]*$ ]] || die "HEARTBEAT_MS must be a positive integer, got '$HEARTBEAT_MS'"
((HEARTBEAT_MS >= 100 && HEARTBEAT_MS <= 30000)) || die "HEARTBEAT_MS must be in 100..=30000 (the config's range), got $HEARTBEAT_MS"
[[ $KILLS =~ ^[1-9][0-9]*$ ]] || die "KILLS must be a positive integer, got '$KILLS'"
[[ $MODE == node || $MODE == redis ]] || die "MODE must be 'node' or 'redis', got '$MODE'"

echo "building release (rcluster and the module)..." >&2
(cd "$ROOT" && cargo build --release -q --workspace) || die "cargo build --release --workspace failed"
[[ -x $RCLUSTER ]] || die "$RCLUSTER is missing after the build"
[[ -f $MODULE ]] || die "$MODULE is missing after the build"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-fd.XXXXXX")
NODE_PIDS=("" "" "") # n1 n2 n3
REDIS_PORTS=()

# Stops the node processes (each stops its own Redis), then checks nothing is left.
cleanup() {
    local status=$? pid i left port
    trap - EXIT INT TERM
    for pid in "${NODE_PIDS[@]}"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${NODE_PIDS[@]}"; do
        [[ -n $pid ]] || continue
        # A node stops its Redis (bounded) before it exits.
        for ((i = 0; i < 600; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "failure_detection.sh: node process $pid did not stop within 60 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            status=1
        fi
        wait "$pid" 2>/dev/null || true
    done
    # Node processes carry the config path (in $TMP); redis-servers rename themselves to
    # "redis-server <host>:<port>", so look for them by port.
    sleep 0.2
    left=$(pgrep -f "$TMP" || true)
    for port in "${REDIS_PORTS[@]}"; do
        left+=" $(pgrep -f "^redis-server [^ ]*:$port( |$)" || true)"
    done
    left=$(echo $left)
    if [[ -n $left ]]; then
        echo "failure_detection.sh: processes from this run are still running after cleanup:" >&2
        ps -o pid,args -p "${left// /,}" >&2 || true
        for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
        status=1
    else
        echo "cleanup: nodes stopped, no redis-server or rcluster process of this run is left" >&2
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True when something listens on (or answers at) the port.
port_busy() {
    if command -v ss >/dev/null; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
        ss -Huln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Nine free ports in 20000-32000 (below the ephemeral range): redis, http, peer per node.
PORTS=()
start=$((20000 + RANDOM % 12000))
for ((i = 0; i < 12000 && ${#PORTS[@]} < 9; i++)); do
    candidate=$((20000 + (start - 20000 + i) % 12000))
    port_busy "$candidate" || PORTS+=("$candidate")
done
((${#PORTS[@]} == 9)) || die "no 9 free ports found in 20000-32000"
REDIS_PORTS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
HTTP_PORTS=("${PORTS[3]}" "${PORTS[4]}" "${PORTS[5]}")

# Redis mode: restart the killed Redis only after 5 s, and never give up restarting it.
SUPERVISION=
[[ $MODE == redis ]] && SUPERVISION="supervision: {restart_on_crash: true, restart_delay_ms: 5000, max_restarts_per_minute: 1000}"
CONFIG=$TMP/cluster.yaml
cat >"$CONFIG" <<EOF
cluster_name: bench
data_dir: $TMP/data
redis_conf: $ROOT/redis.conf
redis_maxmemory_mb: 64
intervals: {heartbeat_ms: $HEARTBEAT_MS}
api: {rate_per_s: 10000, burst: 10000}
$SUPERVISION
nodes:
  - { id: n1, redis_port: ${PORTS[0]}, http_port: ${PORTS[3]}, peer_port: ${PORTS[6]} }
  - { id: n2, redis_port: ${PORTS[1]}, http_port: ${PORTS[4]}, peer_port: ${PORTS[7]} }
  - { id: n3, redis_port: ${PORTS[2]}, http_port: ${PORTS[5]}, peer_port: ${PORTS[8]} }
EOF

# Starts node n<i+1> in the background (appending to its log) and records its pid.
start_node() {
    local i=$1
    "$RCLUSTER" node --config "$CONFIG" --id "n$((i + 1))" --module "$MODULE" >>"$TMP/n$((i + 1)).out" 2>&1 &
    NODE_PIDS[i]=$!
}

# The probe: waits for states seen by n1, kills, and times the detection (all in one process,
# so the 10 ms polling is not slowed down by process start-ups).
cat >"$TMP/probe.py" <<'EOF'
import json, os, signal, sys, time, urllib.request

KEY = os.environ["READ_KEY"]

def get(port, path, key=None, timeout=1.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())

def state(observer_port, node):
    try:
        view = get(observer_port, "/api/nodes", KEY)
    except Exception:
        return None
    for n in view.get("nodes", []):
        if n.get("id") == node:
            return n.get("state")
    return None

def wait_state(port, node, want, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if state(port, node) == want:
            return True
        time.sleep(0.05)
    return False

cmd = sys.argv[1]
if cmd == "wait":  # wait OBSERVER_PORT NODE STATE TIMEOUT_S
    sys.exit(0 if wait_state(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])) else 1)
elif cmd == "health":  # health PORT -> redis_pid
    try:
        pid = get(int(sys.argv[2]), "/api/health").get("redis_pid")
    except Exception as e:
        sys.exit(f"GET /api/health failed: {e}")
    if not pid:
        sys.exit("no redis_pid in /api/health")
    print(pid)
elif cmd == "kill":  # kill OBSERVER_PORT NODE POLL_MS TIMEOUT_S PID... -> "suspect_ms down_ms" (-1: not seen)
    port, node, poll, timeout_s = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) / 1000, float(sys.argv[5])
    pids = [int(p) for p in sys.argv[6:]]
    t0 = time.monotonic()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    suspect = down = -1
    next_poll = t0
    while time.monotonic() - t0 < timeout_s:
        s = state(port, node)
        now = time.monotonic()
        if s == "suspect" and suspect < 0:
            suspect = round((now - t0) * 1000)
        if s == "down":
            down = round((now - t0) * 1000)
            break
        next_poll += poll
        delay = next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_poll = time.monotonic()
    print(suspect, down)
EOF
probe() { READ_KEY=$READ_KEY python3 "$TMP/probe.py" "$@"; }

for i in 0 1 2; do start_node "$i"; done
for i in 0 1 2; do
    for ((t = 0; t < READY_TIMEOUT_S * 10; t++)); do
        probe health "${HTTP_PORTS[i]}" >/dev/null 2>&1 && break
        kill -0 "${NODE_PIDS[i]}" 2>/dev/null || { cat "$TMP/n$((i + 1)).out" >&2; die "node n$((i + 1)) exited during start-up"; }
        sleep 0.1
    done
    probe health "${HTTP_PORTS[i]}" >/dev/null 2>&1 ||
        { cat "$TMP/n$((i + 1)).out" >&2; die "node n$((i + 1)) did not answer /api/health within ${READY_TIMEOUT_S} s"; }
done

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
    # bash reports a SIGKILLed background job ("Killed ...") on stderr when it reaps it: keep
    # that notice out of the output while the node is killed and reaped.
    exec 3>&2 2>>"$TMP/jobs.err"
    result=$(probe kill "${HTTP_PORTS[0]}" n3 "$POLL_MS" "$DOWN_TIMEOUT_S" "${victims[@]}") ||
        { exec 2>&3 3>&-; cat "$TMP/jobs.err" >&2; die "kill $k: the probe failed"; }
    [[ $MODE == node ]] && { wait "${NODE_PIDS[2]}" || true; }
    exec 2>&3 3>&-
    read -r suspect down <<<"$result"
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
        # The SIGKILLed redis-server was reparented away from the node; make sure it is gone
        # before its port is reused.
        for ((t = 0; t < 100; t++)); do
            kill -0 "$redis_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$redis_pid" 2>/dev/null && die "kill $k: n3's redis-server $redis_pid survived SIGKILL"
        start_node 2
    fi
done
probe wait "${HTTP_PORTS[0]}" n3 alive "$ALIVE_TIMEOUT_S" || die "n1 does not see n3 alive again within $ALIVE_TIMEOUT_S s after the last kill"

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }

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
