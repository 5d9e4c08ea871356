# Shared pieces of the benchmarks that start the three node processes of a local cluster
# themselves (`rcluster node --id nX`, not `rcluster up`, which would stop the whole cluster when
# one node dies): bench/failure_detection.sh and bench/failover.sh. Sourced, not run.
#
# Provides: die, require_tools, require_positive_int, build_release, bench_setup (temp dir,
# cleanup trap with the leftover check, the Python helper module), pick_ports, write_config,
# start_node, start_cluster, probe, killing_probe, restart_node, median, percentile, maximum.
# Messages are prefixed with the name of the script that sources this file.

SCRIPT=$(basename "$0")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RCLUSTER=$ROOT/target/release/rcluster
MODULE=$ROOT/target/release/librcluster_module.so
READ_KEY=dev-read-key-change-me
READY_TIMEOUT_S=60

die() {
    echo "$SCRIPT: $*" >&2
    exit 1
}

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed"
    done
}

# Dies unless the variable named $1 holds a positive integer.
require_positive_int() {
    [[ ${!1} =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '${!1}'"
}

build_release() {
    echo "building release (rcluster and the module)..." >&2
    (cd "$ROOT" && cargo build --release -q --workspace) || die "cargo build --release --workspace failed"
    [[ -x $RCLUSTER ]] || die "$RCLUSTER is missing after the build"
    [[ -f $MODULE ]] || die "$MODULE is missing after the build"
}

# Creates the run's temp dir ($TMP, named after $1), installs the cleanup trap and writes the
# Python helper module (rclib.py) that the scripts' probes import.
bench_setup() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-$1.XXXXXX")
    NODE_PIDS=("" "" "") # n1 n2 n3
    REDIS_PORTS=()
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    write_rclib
}

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
            echo "$SCRIPT: node process $pid did not stop within 60 s; killing it" >&2
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
        echo "$SCRIPT: processes from this run are still running after cleanup:" >&2
        ps -o pid,args -p "${left// /,}" >&2 || true
        for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
        status=1
    else
        echo "cleanup: nodes stopped, no redis-server or rcluster process of this run is left" >&2
    fi
    rm -rf "$TMP"
    exit "$status"
}

# True when something listens on (or answers at) the port.
port_busy() {
    if command -v ss >/dev/null; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
        ss -Huln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Nine free ports in 20000-32000 (below the ephemeral range): redis, http, peer per node.
# Sets PORTS, REDIS_PORTS and HTTP_PORTS.
pick_ports() {
    local start i candidate
    PORTS=()
    start=$((20000 + RANDOM % 12000))
    for ((i = 0; i < 12000 && ${#PORTS[@]} < 9; i++)); do
        candidate=$((20000 + (start - 20000 + i) % 12000))
        port_busy "$candidate" || PORTS+=("$candidate")
    done
    ((${#PORTS[@]} == 9)) || die "no 9 free ports found in 20000-32000"
    REDIS_PORTS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
    HTTP_PORTS=("${PORTS[3]}" "${PORTS[4]}" "${PORTS[5]}")
}

# Writes $CONFIG: the three nodes on $PORTS, heartbeat $1 ms, the API rate limit raised so a node
# can be polled every 10 ms, and $2 (extra YAML lines, may be empty).
write_config() {
    CONFIG=$TMP/cluster.yaml
    cat >"$CONFIG" <<EOF
cluster_name: bench
data_dir: $TMP/data
redis_conf: $ROOT/redis.conf
redis_maxmemory_mb: 64
intervals: {heartbeat_ms: $1}
api: {rate_per_s: 10000, burst: 10000}
${2:-}
nodes:
  - { id: n1, redis_port: ${PORTS[0]}, http_port: ${PORTS[3]}, peer_port: ${PORTS[6]} }
  - { id: n2, redis_port: ${PORTS[1]}, http_port: ${PORTS[4]}, peer_port: ${PORTS[7]} }
  - { id: n3, redis_port: ${PORTS[2]}, http_port: ${PORTS[5]}, peer_port: ${PORTS[8]} }
EOF
}

# Starts node n<i+1> in the background (same config and data dir every time, appending to its
# log) and records its pid.
start_node() {
    local i=$1
    "$RCLUSTER" node --config "$CONFIG" --id "n$((i + 1))" --module "$MODULE" >>"$TMP/n$((i + 1)).out" 2>&1 &
    NODE_PIDS[i]=$!
}

# Runs the script's probe ($TMP/probe.py, which imports rclib).
probe() { PYTHONPATH=$TMP READ_KEY=$READ_KEY python3 "$TMP/probe.py" "$@"; }

# Starts the three nodes and waits until each answers GET /api/health.
start_cluster() {
    local i t
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
}

# killing_probe I ARGS...: runs `probe ARGS...` (which SIGKILLs processes) with its output in
# PROBE_OUT; I is the index of the node whose process it kills (reaped here), or - for none.
# bash reports a SIGKILLed background job ("Killed ...") on stderr when it reaps it: that notice
# is kept out of the output while the node is killed and reaped. False when the probe fails.
killing_probe() {
    local i=$1
    shift
    exec 3>&2 2>>"$TMP/jobs.err"
    PROBE_OUT=$(probe "$@") || { exec 2>&3 3>&-; cat "$TMP/jobs.err" >&2; return 1; }
    [[ $i == - ]] || wait "${NODE_PIDS[i]}" || true
    exec 2>&3 3>&-
}

# restart_node I REDIS_PID WHAT: waits until the SIGKILLed redis-server REDIS_PID of node n<I+1>
# is gone (it was reparented away from the node, and its port is about to be reused), then starts
# the node again. WHAT prefixes the error message.
restart_node() {
    local i=$1 redis_pid=$2 t
    for ((t = 0; t < 100; t++)); do
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$redis_pid" 2>/dev/null && die "$3: n$((i + 1))'s redis-server $redis_pid survived SIGKILL"
    start_node "$i"
}

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# percentile P NUMBERS...: the nearest-rank P-th percentile.
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v p="$p" '{ v[NR] = $1 } END {
        r = int(p * NR / 100); if (r < p * NR / 100) r++; if (r < 1) r = 1; print v[r] }'
}
maximum() { printf '%s\n' "$@" | sort -g | tail -1; }

# The Python side: HTTP GETs, the health command, waiting, and the kill-then-poll loop (all in one
# process, so 10 ms polling is not slowed down by process start-ups).
write_rclib() {
    cat >"$TMP/rclib.py" <<'EOF'
import json, os, signal, sys, time, urllib.request

KEY = os.environ["READ_KEY"]

def get(port, path, key=None, timeout=1.0):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())

def wait_until(check, timeout_s, step_s=0.05):
    """Calls check() every step_s until it returns something truthy (returned) or timeout_s passes (None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step_s)
    return None

def kill_and_poll(pids, poll_ms, timeout_s, observe):
    """SIGKILLs pids at the same instant, then calls observe(ms_since_kill) every poll_ms (ms
    measured when observe asks) until it returns True or timeout_s passes."""
    poll = poll_ms / 1000
    t0 = time.monotonic()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    since = lambda: round((time.monotonic() - t0) * 1000)
    next_poll = t0
    while time.monotonic() - t0 < timeout_s:
        if observe(since):
            return
        next_poll += poll
        delay = next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_poll = time.monotonic()

def health(port):  # health PORT -> redis_pid
    try:
        pid = get(int(port), "/api/health").get("redis_pid")
    except Exception as e:
        sys.exit(f"GET /api/health failed: {e}")
    if not pid:
        sys.exit("no redis_pid in /api/health")
    print(pid)

def main(commands):
    commands = {"health": health, **commands}
    commands[sys.argv[1]](*sys.argv[2:])
EOF
}
