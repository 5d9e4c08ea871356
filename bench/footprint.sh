#!/usr/bin/env bash
# Benchmark: idle footprint (RSS and CPU) of the node processes of a local 3-node cluster, normal and --low-resource (targets for --low-resource: node process RSS < 20 MB, CPU < 1%).
#
# Usage: bench/footprint.sh            (IDLE_S=60 by default; the run takes about 2 x IDLE_S)
#        IDLE_S=30 bench/footprint.sh
# Builds release, then for each mode (normal, then --low-resource) starts a 3-node cluster with
# `rcluster up` on free ports, waits for "cluster ready", lets it idle IDLE_S seconds (no client
# traffic; only heartbeats and the nodes' own timers) and stops it. Over the idle window it samples
# every node process (the children of `rcluster up` running `node`) and their redis-servers:
#   RSS: /proc/<pid>/status VmRSS, sampled SAMPLES times (start, evenly spaced, end); max reported.
#   CPU: (utime + stime) from /proc/<pid>/stat at the start and the end of the window, in ticks of
#        `getconf CLK_TCK`, as a percentage of one core over the window's wall time.
# MB here is MiB (VmRSS kB / 1024). The redis-servers' figures are for context; the targets apply
# to the node processes in --low-resource mode. Exits non-zero only when the setup fails (build,
# start, a process vanishing during the window, processes left behind), never because a target
# was missed.
set -euo pipefail

IDLE_S=${IDLE_S:-60}
SAMPLES=${SAMPLES:-7}
TARGET_RSS_MB=20
TARGET_CPU_PCT=1
READY_TIMEOUT_S=90

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RCLUSTER=$ROOT/target/release/rcluster
MODULE=$ROOT/target/release/librcluster_module.so

die() {
    echo "footprint.sh: $*" >&2
    exit 1
}

for tool in cargo redis-server pgrep getconf; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ $IDLE_S =~ ^[1-9][0-9]*$ ]] || die "IDLE_S must be a positive integer, got '$IDLE_S'"
[[ $SAMPLES =~ ^[1-9][0-9]*$ ]] && ((SAMPLES >= 2)) || die "SAMPLES must be an integer >= 2, got '$SAMPLES'"
[[ -r /proc/self/status && -r /proc/self/stat ]] || die "/proc is not readable"
TICKS=$(getconf CLK_TCK)
[[ $TICKS =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK answered '$TICKS'"

echo "building release (rcluster and the module)..." >&2
(cd "$ROOT" && cargo build --release -q --workspace) || die "cargo build --release --workspace failed"
[[ -x $RCLUSTER ]] || die "$RCLUSTER is missing after the build"
[[ -f $MODULE ]] || die "$MODULE is missing after the build"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-footprint.XXXXXX")
UP_PID=
REDIS_PORTS=()

# Stops the running cluster (rcluster up stops its nodes, each its Redis) and checks that nothing
# of it is left; returns non-zero when something had to be killed.
stop_cluster() {
    local rc=0 i left port pid
    if [[ -n $UP_PID ]]; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        # rcluster up stops its nodes (each bounded to 25 s) before it exits.
        for ((i = 0; i < 600; i++)); do
            kill -0 "$UP_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$UP_PID" 2>/dev/null; then
            echo "footprint.sh: rcluster up (pid $UP_PID) did not stop within 60 s; killing it" >&2
            kill -KILL "$UP_PID" 2>/dev/null || true
            rc=1
        fi
        wait "$UP_PID" 2>/dev/null || true
        UP_PID=
    fi
    # Node processes carry the config path (in $TMP); redis-servers rename themselves to
    # "redis-server <host>:<port>", so look for them by port.
    sleep 0.2
    left=$(pgrep -f "$TMP" || true)
    for port in "${REDIS_PORTS[@]}"; do
        left+=" $(pgrep -f "^redis-server [^ ]*:$port( |$)" || true)"
    done
    left=$(echo $left)
    if [[ -n $left ]]; then
        echo "footprint.sh: processes of this run are still running after the cluster stopped:" >&2
        ps -o pid,args -p "${left// /,}" >&2 || true
        for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
        rc=1
    fi
    REDIS_PORTS=()
    return "$rc"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if stop_cluster; then
        echo "cleanup: cluster stopped, no redis-server or rcluster process of this run is left" >&2
    else
        status=1
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

# VmRSS of a pid in kB (dies when the process is gone).
rss_kb() {
    local kb
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || true
    [[ -n $kb ]] || die "process $1 ($2) is gone or has no VmRSS"
    echo "$kb"
}

# utime + stime of a pid in ticks (fields 14 and 15 of /proc/<pid>/stat; the command name, field
# 2, may hold spaces, so count from after its closing parenthesis).
cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || die "process $1 ($2) is gone"
    rest=${stat##*) }
    awk '{ print $12 + $13 }' <<<"$rest"
}

now_ns() { date +%s%N; }

# The argument following `--id` in a pid's command line.
node_id_of() {
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | awk 'prev == "--id" { print; exit } { prev = $0 }'
}

declare -A RESULT_LINES
VERDICTS=()

# Runs one mode: normal | low.
run_mode() {
    local mode=$1 i start candidate pid id rpid extra=() label
    label=$mode
    [[ $mode == low ]] && extra=(--low-resource) label="--low-resource"

    # Nine free ports in 20000-32000 (below the ephemeral range): redis, http, peer per node.
    local ports=()
    start=$((20000 + RANDOM % 12000))
    for ((i = 0; i < 12000 && ${#ports[@]} < 9; i++)); do
        candidate=$((20000 + (start - 20000 + i) % 12000))
        port_busy "$candidate" || ports+=("$candidate")
    done
    ((${#ports[@]} == 9)) || die "no 9 free ports found in 20000-32000"
    REDIS_PORTS=("${ports[0]}" "${ports[1]}" "${ports[2]}")

    local dir=$TMP/$mode
    mkdir -p "$dir"
    cat >"$dir/cluster.yaml" <<EOF
cluster_name: bench
data_dir: $dir/data
redis_conf: $ROOT/redis.conf
nodes:
  - { id: n1, redis_port: ${ports[0]}, http_port: ${ports[3]}, peer_port: ${ports[6]} }
  - { id: n2, redis_port: ${ports[1]}, http_port: ${ports[4]}, peer_port: ${ports[7]} }
  - { id: n3, redis_port: ${ports[2]}, http_port: ${ports[5]}, peer_port: ${ports[8]} }
EOF

    "$RCLUSTER" up --config "$dir/cluster.yaml" --module "$MODULE" "${extra[@]}" >"$dir/up.out" 2>&1 &
    UP_PID=$!
    for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
        grep -q 'cluster ready' "$dir/up.out" && break
        kill -0 "$UP_PID" 2>/dev/null || { cat "$dir/up.out" >&2; die "rcluster up $label exited during start-up"; }
        sleep 0.1
    done
    grep -q 'cluster ready' "$dir/up.out" || { cat "$dir/up.out" >&2; die "the cluster ($label) was not ready within ${READY_TIMEOUT_S} s"; }

    # Node processes: children of rcluster up running `node`; their redis-servers: their children.
    local -A node_pid redis_pid
    for pid in $(pgrep -P "$UP_PID" || true); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qw node || continue
        id=$(node_id_of "$pid")
        [[ -n $id ]] || continue
        node_pid[$id]=$pid
        for rpid in $(pgrep -P "$pid" || true); do
            [[ $(cat "/proc/$rpid/comm" 2>/dev/null) == redis-server ]] && redis_pid[$id]=$rpid
        done
    done
    local ids=(n1 n2 n3)
    for id in "${ids[@]}"; do
        [[ -n ${node_pid[$id]:-} ]] || die "node process of $id not found among the children of rcluster up ($UP_PID)"
        [[ -n ${redis_pid[$id]:-} ]] || die "redis-server of $id not found among the children of its node process (${node_pid[$id]})"
    done

    echo "$label: cluster ready (node pids ${node_pid[n1]} ${node_pid[n2]} ${node_pid[n3]}," \
        "redis pids ${redis_pid[n1]} ${redis_pid[n2]} ${redis_pid[n3]}); idling ${IDLE_S} s, $SAMPLES RSS samples..." >&2

    local -A cpu0 cpu1 rss_max rss_min
    local t0 t1 s step_ms target_ns now
    t0=$(now_ns)
    for id in "${ids[@]}"; do
        cpu0[n.$id]=$(cpu_ticks "${node_pid[$id]}" "node $id")
        cpu0[r.$id]=$(cpu_ticks "${redis_pid[$id]}" "redis-server of $id")
        rss_max[n.$id]=0 rss_max[r.$id]=0 rss_min[n.$id]=999999999 rss_min[r.$id]=999999999
    done
    step_ms=$((IDLE_S * 1000 / (SAMPLES - 1)))
    for ((s = 0; s < SAMPLES; s++)); do
        if ((s > 0)); then
            # Sleep until sample s is due (IDLE_S in total, whatever the sampling itself took).
            target_ns=$((t0 + (s == SAMPLES - 1 ? IDLE_S * 1000 : s * step_ms) * 1000000))
            now=$(now_ns)
            ((target_ns > now)) && sleep "$(awk -v d=$((target_ns - now)) 'BEGIN { printf "%.3f", d / 1e9 }')"
        fi
        kill -0 "$UP_PID" 2>/dev/null || { cat "$dir/up.out" >&2; die "rcluster up $label exited during the idle window"; }
        local kb key
        for id in "${ids[@]}"; do
            kb=$(rss_kb "${node_pid[$id]}" "node $id")
            key=n.$id
            ((kb > rss_max[$key])) && rss_max[$key]=$kb
            ((kb < rss_min[$key])) && rss_min[$key]=$kb
            kb=$(rss_kb "${redis_pid[$id]}" "redis-server of $id")
            key=r.$id
            ((kb > rss_max[$key])) && rss_max[$key]=$kb
            ((kb < rss_min[$key])) && rss_min[$key]=$kb
        done
    done
    for id in "${ids[@]}"; do
        cpu1[n.$id]=$(cpu_ticks "${node_pid[$id]}" "node $id")
        cpu1[r.$id]=$(cpu_ticks "${redis_pid[$id]}" "redis-server of $id")
    done
    t1=$(now_ns)

    local out="" line cpu_n cpu_r
    for id in "${ids[@]}"; do
        cpu_n=$(awk -v d=$((cpu1[n.$id] - cpu0[n.$id])) -v hz="$TICKS" -v w=$((t1 - t0)) 'BEGIN { printf "%.3f", 100 * d / hz / (w / 1e9) }')
        cpu_r=$(awk -v d=$((cpu1[r.$id] - cpu0[r.$id])) -v hz="$TICKS" -v w=$((t1 - t0)) 'BEGIN { printf "%.3f", 100 * d / hz / (w / 1e9) }')
        line=$(awk -v id="$id" -v nmax="${rss_max[n.$id]}" -v nmin="${rss_min[n.$id]}" -v ncpu="$cpu_n" \
            -v nt=$((cpu1[n.$id] - cpu0[n.$id])) -v rmax="${rss_max[r.$id]}" -v rmin="${rss_min[r.$id]}" -v rcpu="$cpu_r" 'BEGIN {
            printf "  %-3s node: RSS %6.1f MB (min %6.1f)  CPU %6.3f %% (%d ticks) | redis-server: RSS %6.1f MB (min %6.1f)  CPU %6.3f %%",
                id, nmax / 1024, nmin / 1024, ncpu, nt, rmax / 1024, rmin / 1024, rcpu }')
        out+="$line"$'\n'
        if [[ $mode == low ]]; then
            VERDICTS+=("$(awk -v id="$id" -v r="${rss_max[n.$id]}" -v c="$cpu_n" -v tr="$TARGET_RSS_MB" -v tc="$TARGET_CPU_PCT" 'BEGIN {
                printf "  %s: node process RSS < %d MB: %s (%.1f MB) | CPU < %d%%: %s (%.3f %%)", id,
                    tr, (r / 1024 < tr ? "met" : "MISSED"), r / 1024, tc, (c < tc ? "met" : "MISSED"), c }')")
        fi
    done
    local heartbeat
    heartbeat=$([[ $mode == low ]] && echo "10000" || echo "1000")
    RESULT_LINES[$mode]="$label (heartbeat $heartbeat ms), idle window $(awk -v w=$((t1 - t0)) 'BEGIN { printf "%.1f", w / 1e9 }') s:"$'\n'"$out"

    stop_cluster || die "the $label cluster left processes behind"
}

echo "$(nproc) CPUs, CLK_TCK $TICKS, IDLE_S $IDLE_S, $SAMPLES RSS samples per process" >&2
run_mode normal
run_mode low

echo
echo "idle footprint, 3-node cluster via rcluster up (RSS: max of $SAMPLES samples, MB = MiB; CPU: % of one core over the window)"
printf '%s' "${RESULT_LINES[normal]}"
printf '%s' "${RESULT_LINES[low]}"
echo "targets (--low-resource node processes):"
printf '%s\n' "${VERDICTS[@]}"
