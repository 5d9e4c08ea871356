# Shared pieces of the scripts that start a local cluster (or one redis-server) on free ports and
# must leave nothing behind: bench/failure_detection.sh and bench/failover.sh (three
# `rcluster node --id nX` processes, not `rcluster up`, which would stop the whole cluster when one
# node dies), bench/quorum.sh, bench/files.sh and bench/footprint.sh (`rcluster up`),
# bench/module_put.sh (one redis-server with the module) and tests/schemathesis/run.sh. Sourced,
# not run; source it before setting the script's own constants (it sets READY_TIMEOUT_S).
#
# Provides: die, require_tools, require_positive_int, cargo_build, require_built, build_release,
# make_tmp, install_cleanup, bench_setup, cleanup (stop_pids, stop_nodes, stop_up,
# kill_leftovers), free_ports, pick_ports, write_cluster_yaml, write_config, start_rcluster_up,
# wait_cluster_ready, start_redis, wait_redis, baseline_setup, start_cluster_and_baseline, cli,
# redis_version, start_node, start_cluster, probe, killing_probe, restart_node, median,
# percentile, maximum.
# Messages are prefixed with $SCRIPT, the name of the script that sources this file (a script may
# set another name after sourcing).

SCRIPT=$(basename "$0")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RCLUSTER=$ROOT/target/release/rcluster
MODULE=$ROOT/target/release/librcluster_module.so
READ_KEY=dev-read-key-change-me
ADMIN_KEY=dev-admin-key-change-me
READY_TIMEOUT_S=60

# What the cleanup trap stops (each script records what it starts): benchmark clients, the node
# processes of start_node, `rcluster up` (start_rcluster_up) and a plain redis-server (start_redis).
BENCH_PIDS=()
NODE_PIDS=()
UP_PID=
BASE_PID=
# Redis ports of this run: kill_leftovers looks for redis-servers on them.
REDIS_PORTS=()
TMP=
# How cleanup reports: CHECK_LEFTOVERS=0 skips the leftover check; LEFTOVER_WARNING is the message
# when processes are left; CLEANUP_OK (empty: no line) completes "cleanup: ... stopped, no
# redis-server or rcluster process of this run is left"; AT_EXIT (a function name, may be empty)
# runs last, just before the exit.
CHECK_LEFTOVERS=1
LEFTOVER_WARNING="processes from this run are still running after cleanup"
CLEANUP_OK=nodes
AT_EXIT=

# Prints "$SCRIPT: MESSAGE" on stderr and exits 1.
die() {
    echo "$SCRIPT: $*" >&2
    exit 1
}

# Dies unless every command named as an argument is installed.
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

# cargo_build WHAT ARGS...: announces "building WHAT..." and runs `cargo build -q ARGS...` in $ROOT;
# dies when the build fails.
cargo_build() {
    echo "building $1..." >&2
    shift
    (cd "$ROOT" && cargo build -q "$@") || die "cargo build $* failed"
}

# require_built [module]: dies unless the build left $RCLUSTER (executable) and $MODULE; with
# `module`, only $MODULE.
require_built() {
    [[ ${1:-} == module || -x $RCLUSTER ]] || die "$RCLUSTER is missing after the build"
    [[ -f $MODULE ]] || die "$MODULE is missing after the build"
}

# Builds the whole workspace in release mode (rcluster and the module).
build_release() {
    cargo_build "release (rcluster and the module)" --release --workspace
    require_built
}

# make_tmp NAME: creates the run's temp dir $TMP (rcluster-NAME.XXXXXX in $TMPDIR or /tmp).
make_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-$1.XXXXXX")
}

# Installs cleanup as the EXIT trap; INT and TERM exit 130 and 143 (through cleanup).
install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Creates the run's temp dir ($TMP, named after $1), installs the cleanup trap and writes the
# Python helper module (rclib.py) that the node-process scripts' probes import.
bench_setup() {
    make_tmp "$1"
    NODE_PIDS=("" "" "") # n1 n2 n3
    install_cleanup
    write_rclib
}

# The EXIT trap: stops what the run started (benchmarks, node processes, rcluster up, the plain
# redis-server), checks that nothing of it is left (unless CHECK_LEFTOVERS=0), removes $TMP, runs
# $AT_EXIT and exits with the script's status, or 1 when something had to be killed.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $TMP ]]; then
        stop_pids "${BENCH_PIDS[@]}"
        stop_nodes || status=1
        stop_up || status=1
        stop_pids "$BASE_PID"
        if ((CHECK_LEFTOVERS)); then
            if ! kill_leftovers; then
                status=1
            elif [[ -n $CLEANUP_OK ]]; then
                echo "cleanup: $CLEANUP_OK stopped, no redis-server or rcluster process of this run is left" >&2
            fi
        fi
        rm -rf "$TMP"
    fi
    if [[ -n $AT_EXIT ]]; then "$AT_EXIT"; fi
    exit "$status"
}

# stop_pids PID...: SIGTERMs each process (empty arguments are skipped) and reaps it.
stop_pids() {
    local pid
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# stop_bounded PID WHAT: waits up to 60 s for PID (already sent SIGTERM) to exit, else SIGKILLs it
# ("$SCRIPT: WHAT did not stop within 60 s; killing it"); reaps it. False when it was killed.
stop_bounded() {
    local pid=$1 i rc=0
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$SCRIPT: $2 did not stop within 60 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        rc=1
    fi
    wait "$pid" 2>/dev/null || true
    return "$rc"
}

# Stops the node processes of NODE_PIDS, all SIGTERMed at once (each stops its own Redis, bounded,
# before it exits). False when one had to be killed.
stop_nodes() {
    local pid rc=0
    for pid in "${NODE_PIDS[@]}"; do
        if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for pid in "${NODE_PIDS[@]}"; do
        [[ -n $pid ]] || continue
        stop_bounded "$pid" "node process $pid" || rc=1
    done
    return "$rc"
}

# Stops `rcluster up` ($UP_PID; it stops its nodes, each bounded to 25 s, before it exits) and
# clears UP_PID. False when it had to be killed.
stop_up() {
    [[ -n $UP_PID ]] || return 0
    local pid=$UP_PID
    UP_PID=
    kill -TERM "$pid" 2>/dev/null || true
    stop_bounded "$pid" "rcluster up (pid $pid)"
}

# Looks for processes of this run still running: node processes (and helpers) carry paths in
# $TMP; redis-servers rename themselves to "redis-server <host>:<port>", so they are looked for by
# port (REDIS_PORTS). Lists ("$SCRIPT: $LEFTOVER_WARNING:") and SIGKILLs any, and is then false.
kill_leftovers() {
    local left port pid
    sleep 0.2
    left=$(pgrep -f "$TMP" || true)
    for port in "${REDIS_PORTS[@]}"; do
        left+=" $(pgrep -f "^redis-server [^ ]*:$port( |$)" || true)"
    done
    left=$(echo $left)
    [[ -n $left ]] || return 0
    echo "$SCRIPT: $LEFTOVER_WARNING:" >&2
    ps -o pid,args -p "${left// /,}" >&2 || true
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    return 1
}

# True when something listens on (or answers at) the port.
port_busy() {
    if command -v ss >/dev/null; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
        ss -Huln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_ports N: N free ports in 20000-32000 (below the ephemeral range), from a random start, in
# PORTS.
free_ports() {
    local n=$1 start i candidate
    PORTS=()
    start=$((20000 + RANDOM % 12000))
    for ((i = 0; i < 12000 && ${#PORTS[@]} < n; i++)); do
        candidate=$((20000 + (start - 20000 + i) % 12000))
        port_busy "$candidate" || PORTS+=("$candidate")
    done
    ((${#PORTS[@]} == n)) || die "no $n free ports found in 20000-32000"
}

# pick_ports [EXTRA]: free ports for the three nodes, redis, http and peer each (PORTS[0..8], the
# layout of write_cluster_yaml), plus EXTRA more (PORTS[9]...). Sets PORTS, REDIS_PORTS (the
# nodes') and HTTP_PORTS.
pick_ports() {
    free_ports $((9 + ${1:-0}))
    REDIS_PORTS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
    HTTP_PORTS=("${PORTS[3]}" "${PORTS[4]}" "${PORTS[5]}")
}

# write_cluster_yaml FILE CLUSTER_NAME DATA_DIR [YAML_LINES]: writes a cluster config to FILE: nodes
# n1, n2, n3 on PORTS (pick_ports), the repo's redis.conf, and YAML_LINES (may be empty) before
# the node list.
write_cluster_yaml() {
    {
        echo "cluster_name: $2"
        echo "data_dir: $3"
        echo "redis_conf: $ROOT/redis.conf"
        [[ -z ${4:-} ]] || printf '%s\n' "$4"
        echo "nodes:"
        echo "  - { id: n1, redis_port: ${PORTS[0]}, http_port: ${PORTS[3]}, peer_port: ${PORTS[6]} }"
        echo "  - { id: n2, redis_port: ${PORTS[1]}, http_port: ${PORTS[4]}, peer_port: ${PORTS[7]} }"
        echo "  - { id: n3, redis_port: ${PORTS[2]}, http_port: ${PORTS[5]}, peer_port: ${PORTS[8]} }"
    } >"$1"
}

# Writes $CONFIG ($TMP/cluster.yaml) for the node-process scripts: heartbeat $1 ms, the API rate
# limit raised so a node can be polled every 10 ms, and $2 (extra YAML lines, may be empty).
write_config() {
    CONFIG=$TMP/cluster.yaml
    write_cluster_yaml "$CONFIG" bench "$TMP/data" "redis_maxmemory_mb: 64
intervals: {heartbeat_ms: $1}
api: {rate_per_s: 10000, burst: 10000}${2:+
$2}"
}

# start_rcluster_up LOG ARGS...: starts `$RCLUSTER up ARGS...` in the background, output to LOG,
# and records its pid in UP_PID (cleanup stops it).
start_rcluster_up() {
    local log=$1
    shift
    "$RCLUSTER" up "$@" >"$log" 2>&1 &
    UP_PID=$!
}

# wait_cluster_ready LOG [LABEL]: waits up to READY_TIMEOUT_S until `rcluster up` ($UP_PID) logs
# "cluster ready" in LOG; dies (showing LOG) when it exits first or the time runs out. LABEL names
# the cluster in those messages.
wait_cluster_ready() {
    local log=$1 label=${2:-} i
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        grep -q 'cluster ready' "$log" && break
        kill -0 "$UP_PID" 2>/dev/null || { cat "$log" >&2; die "rcluster up${label:+ $label} exited during start-up"; }
        sleep 0.1
    done
    grep -q 'cluster ready' "$log" || { cat "$log" >&2; die "the cluster${label:+ ($label)} was not ready within ${READY_TIMEOUT_S} s"; }
}

# start_redis PORT DIR ARGS...: starts a plain redis-server (the repo's redis.conf, appendonly yes,
# data in DIR, then ARGS) in the background, output to BASE_LOG (DIR/redis.log), and records its
# pid in BASE_PID (cleanup stops it).
start_redis() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    BASE_LOG=$dir/redis.log
    redis-server "$ROOT/redis.conf" --port "$port" --appendonly yes --dir "$dir" "$@" >"$BASE_LOG" 2>&1 &
    BASE_PID=$!
}

# wait_redis PORT WHAT: waits up to 10 s until the redis-server of start_redis ($BASE_PID) answers
# PING on PORT; dies (showing $BASE_LOG) when it exits first ("WHAT exited during start-up") or
# does not answer in time.
wait_redis() {
    local port=$1 what=$2 log=$BASE_LOG i
    for ((i = 0; i < 100; i++)); do
        [[ $(cli "$port" PING 2>/dev/null) == PONG ]] && break
        kill -0 "$BASE_PID" 2>/dev/null || { cat "$log" >&2; die "$what exited during start-up"; }
        sleep 0.1
    done
    [[ $(cli "$port" PING 2>/dev/null) == PONG ]] || { cat "$log" >&2; die "$what did not answer PING on port $port"; }
}

# baseline_setup NAME [YAML_LINES]: the setup of the benchmarks comparing the cluster with one plain
# redis-server (the baseline): temp dir ($TMP, named after NAME) with the cleanup trap (it stops
# the benchmarks, the cluster and the baseline, then checks nothing is left), eleven free ports
# (the three nodes', BASE_PORT and SPARE_PORT; NODE_PORTS holds the nodes' redis ports,
# REDIS_PORTS all four) and $CONFIG ($TMP/cluster.yaml, cluster "bench", with YAML_LINES).
baseline_setup() {
    make_tmp "$1"
    CLEANUP_OK="cluster and baseline"
    install_cleanup
    pick_ports 2
    SPARE_PORT=${PORTS[10]}
    NODE_PORTS=("${REDIS_PORTS[@]}")
    BASE_PORT=${PORTS[9]}
    REDIS_PORTS+=("$BASE_PORT")
    CONFIG=$TMP/cluster.yaml
    write_cluster_yaml "$CONFIG" bench "$TMP/data" "${2:-}"
}

# start_cluster_and_baseline ARGS...: starts `rcluster up` on $CONFIG and the baseline
# redis-server on BASE_PORT (data in $TMP/baseline; ARGS are extra redis-server arguments) at
# once, waits until both are ready, and dies unless the baseline runs without a module.
start_cluster_and_baseline() {
    start_rcluster_up "$TMP/up.out" --config "$CONFIG"
    start_redis "$BASE_PORT" "$TMP/baseline" "$@"
    wait_cluster_ready "$TMP/up.out"
    wait_redis "$BASE_PORT" "the baseline redis-server"
    [[ -z $(cli "$BASE_PORT" MODULE LIST) ]] || die "the baseline redis-server has a module loaded"
}

# cli PORT ARGS...: redis-cli against the redis-server on PORT.
cli() {
    local port=$1
    shift
    redis-cli -p "$port" "$@"
}

# The installed redis-server's version (e.g. 7.0.15).
redis_version() {
    redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/'
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

# median [-d DIGITS] NUMBERS...: the median of the numbers, printed with DIGITS decimals (1 unless
# given).
median() {
    local digits=1
    if [[ ${1:-} == -d ]]; then
        digits=$2
        shift 2
    fi
    printf '%s\n' "$@" | sort -g | awk -v f="%.${digits}f" '{ v[NR] = $1 } END {
        if (NR % 2) printf f, v[(NR + 1) / 2]; else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# percentile P NUMBERS...: the nearest-rank P-th percentile.
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v p="$p" '{ v[NR] = $1 } END {
        r = int(p * NR / 100); if (r < p * NR / 100) r++; if (r < 1) r = 1; print v[r] }'
}
# Largest of the numbers given as arguments.
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
