#!/usr/bin/env bash
# Benchmark: footprint (RSS and CPU) of the node processes of a local 3-node cluster, idle and
# under a light load, normal and --low-resource (targets for --low-resource, idle: node process
# RSS < 20 MB, CPU < 1%).
#
# Usage: bench/footprint.sh            (IDLE_S=60, LOAD_OPS_PER_S=60 by default; the run takes
#                                       about 4 x IDLE_S)
#        IDLE_S=30 bench/footprint.sh
# The light load: after the idle window, one redis-cli per node sends RC.SET and RC.GET in turn,
# LOAD_OPS_PER_S in all (a third on each node, W=2 and R=2 as configured), for another IDLE_S
# seconds, measured the same way.
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

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_S=${IDLE_S:-60}
LOAD_OPS_PER_S=${LOAD_OPS_PER_S:-60}
SAMPLES=${SAMPLES:-7}
TARGET_RSS_MB=20
TARGET_CPU_PCT=1
READY_TIMEOUT_S=90

require_tools cargo redis-server pgrep getconf
require_positive_int IDLE_S
require_positive_int LOAD_OPS_PER_S
[[ $SAMPLES =~ ^[1-9][0-9]*$ ]] && ((SAMPLES >= 2)) || die "SAMPLES must be an integer >= 2, got '$SAMPLES'"
[[ -r /proc/self/status && -r /proc/self/stat ]] || die "/proc is not readable"
TICKS=$(getconf CLK_TCK)
[[ $TICKS =~ ^[1-9][0-9]*$ ]] || die "getconf CLK_TCK answered '$TICKS'"

build_release

# Cleanup stops the running cluster, if any, and checks that nothing of this run is left.
make_tmp footprint
CLEANUP_OK=cluster
LEFTOVER_WARNING="processes of this run are still running after the cluster stopped"
install_cleanup

# Stops the running cluster (rcluster up stops its nodes, each its Redis) and checks that nothing
# of it is left; returns non-zero when something had to be killed.
stop_cluster() {
    local rc=0
    stop_up || rc=1
    kill_leftovers || rc=1
    REDIS_PORTS=()
    return "$rc"
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
    local mode=$1 pid id rpid extra=() label
    label=$mode
    [[ $mode == low ]] && extra=(--low-resource) label="--low-resource"

    pick_ports # nine free ports: redis, http, peer per node
    local dir=$TMP/$mode
    mkdir -p "$dir"
    write_cluster_yaml "$dir/cluster.yaml" bench "$dir/data"
    start_rcluster_up "$dir/up.out" --config "$dir/cluster.yaml" --module "$MODULE" "${extra[@]}"
    wait_cluster_ready "$dir/up.out" "$label"

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
        "redis pids ${redis_pid[n1]} ${redis_pid[n2]} ${redis_pid[n3]})" >&2
    local phase load_pids=()
    for phase in idle load; do
    if [[ $phase == load ]]; then
        # One client per node, each a third of the rate, alternating writes and reads.
        local per_node interval i=0 port
        per_node=$(( (LOAD_OPS_PER_S + 2) / 3 ))
        interval=$(awk -v r="$per_node" 'BEGIN { printf "%.4f", 2 / r }')
        for port in "${REDIS_PORTS[@]}"; do
            i=$((i + 1))
            (redis-cli -p "$port" -r $((IDLE_S * per_node / 2 + per_node)) -i "$interval" \
                RC.SET "footprint:$i" "a-light-load-value" >/dev/null 2>&1 &
             redis-cli -p "$port" -r $((IDLE_S * per_node / 2 + per_node)) -i "$interval" \
                RC.GET "footprint:$i" >/dev/null 2>&1 &
             wait) &
            load_pids+=($!)
        done
    fi
    echo "$label: $phase window ${IDLE_S} s, $SAMPLES RSS samples..." >&2

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
        kill -0 "$UP_PID" 2>/dev/null || { cat "$dir/up.out" >&2; die "rcluster up $label exited during the $phase window"; }
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
        if [[ $mode == low && $phase == idle ]]; then
            VERDICTS+=("$(awk -v id="$id" -v r="${rss_max[n.$id]}" -v c="$cpu_n" -v tr="$TARGET_RSS_MB" -v tc="$TARGET_CPU_PCT" 'BEGIN {
                printf "  %s: node process RSS < %d MB: %s (%.1f MB) | CPU < %d%%: %s (%.3f %%)", id,
                    tr, (r / 1024 < tr ? "met" : "MISSED"), r / 1024, tc, (c < tc ? "met" : "MISSED"), c }')")
        fi
    done
    local heartbeat
    heartbeat=$([[ $mode == low ]] && echo "10000" || echo "1000")
    RESULT_LINES[$mode.$phase]="$label (heartbeat $heartbeat ms), $phase window $(awk -v w=$((t1 - t0)) 'BEGIN { printf "%.1f", w / 1e9 }') s:"$'\n'"$out"

    if [[ $phase == load ]]; then
        kill "${load_pids[@]}" 2>/dev/null || true
        pkill -f "redis-cli -p .* -r " 2>/dev/null || true
        wait "${load_pids[@]}" 2>/dev/null || true
    fi
    done
    stop_cluster || die "the $label cluster left processes behind"
}

echo "$(nproc) CPUs, CLK_TCK $TICKS, IDLE_S $IDLE_S, LOAD_OPS_PER_S $LOAD_OPS_PER_S, $SAMPLES RSS samples per process" >&2
run_mode normal
run_mode low

echo
echo "footprint, 3-node cluster via rcluster up, idle then $LOAD_OPS_PER_S RC.SET/RC.GET per second (RSS: max of $SAMPLES samples, MB = MiB; CPU: % of one core over the window)"
printf '%s' "${RESULT_LINES[normal.idle]}" "${RESULT_LINES[normal.load]}"
printf '%s' "${RESULT_LINES[low.idle]}" "${RESULT_LINES[low.load]}"
echo "targets (--low-resource node processes, idle):"
printf '%s\n' "${VERDICTS[@]}"
