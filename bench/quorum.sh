#!/usr/bin/env bash
# Benchmark: quorum RC.SET / RC.GET on a local 3-node cluster against plain SET / GET on one redis-server (targets: RC.SET >= 0.8 x SET, p99 < 5 ms).
#
# Usage: bench/quorum.sh            (REQUESTS=100000 ROUNDS=3 by default)
#        REQUESTS=50000 ROUNDS=5 bench/quorum.sh
# Builds release, starts a 3-node cluster with `rcluster up` (N=3, W=2, R=2) on free ports and one
# plain redis-server (repo redis.conf, appendonly yes, no module) as the baseline, pre-fills the
# key space k:0..k:99999 on both, then runs ROUNDS alternating rounds of
#   SET (baseline) | RC.SET one entry | RC.SET spread | GET (baseline) | RC.GET one entry | RC.GET spread
# with 50 clients, -r 100000 and 16-byte values, and prints the medians (req/s, p50, p99).
#   one entry: all 50 clients on n1.
#   spread:    three redis-benchmark processes at once, 17/17/16 clients on n1/n2/n3, the requests
#              split the same way; req/s = sum of the three, p50/p99 = the worst of the three.
# Each round also measures the bound this machine sets (ideal, after the SET baseline): the same
# three redis-servers storing every write three times with plain SET and no coordination at all
# (17/17/16 clients sending SET, plus on each node two pipelined connections, -P 8, sending the
# 2/3 x REQUESTS copies the other two nodes would forward), on keys ideal:*, deleted afterwards;
# req/s = REQUESTS / the time until all six benchmarks finished. Its ratio to SET is what a
# perfect coordinator could reach here: on two cores the three copies share the cores that one
# plain Redis and its benchmark client use.
# The SET runs also measure CPU per request (user + system): each Redis server's from
# /proc/<pid>/stat, the benchmark client's from the shell's child times, and print the budget a
# write would have at 0.8 x SET: the machine's cores over that rate, less the client's share.
# Exits non-zero only when the setup fails (build, start, commands answering errors, processes left
# behind), never because a target was missed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=${REQUESTS:-100000}
ROUNDS=${ROUNDS:-3}
CLIENTS=50
SPREAD_CLIENTS=(17 17 16) # n1 n2 n3; sums to CLIENTS
KEYSPACE=100000           # redis-benchmark -r
VALUE=0123456789abcdef    # 16 bytes
TARGET_RATIO=0.8
TARGET_P99_MS=5
READY_TIMEOUT_S=90

require_tools cargo redis-server redis-cli redis-benchmark pgrep
require_positive_int REQUESTS
require_positive_int ROUNDS
((REQUESTS >= 3)) || die "REQUESTS must be at least 3 (the spread runs split it over three nodes)"

build_release

# Temp dir, cleanup, ports (NODE_PORTS: n1 n2 n3; BASE_PORT) and $CONFIG; then the cluster and the
# baseline.
baseline_setup quorum
start_cluster_and_baseline

# The measured commands must succeed: redis-benchmark 7 stops at the first error reply, and a
# quorum error would make the figure meaningless.
[[ $(cli "$BASE_PORT" SET k:check "$VALUE") == OK ]] || die "SET fails on the baseline"
[[ $(cli "$BASE_PORT" GET k:check) == "$VALUE" ]] || die "GET fails on the baseline"
for n in 0 1 2; do
    reply=$(cli "${NODE_PORTS[n]}" RC.SET "k:check$n" "$VALUE" 2>&1)
    [[ $reply == OK ]] || die "RC.SET on n$((n + 1)) answers '$reply'"
    reply=$(cli "${NODE_PORTS[(n + 1) % 3]}" RC.GET "k:check$n" 2>&1)
    [[ $reply == "$VALUE" ]] || die "RC.GET on n$(((n + 1) % 3 + 1)) of a key written on n$((n + 1)) answers '$reply'"
done

# Pre-fill every key the benchmarks touch (k:000000000000 .. k:000000099999, as redis-benchmark
# formats __rand_int__), so GET and RC.GET read written keys and every SET overwrites.
awk -v n="$KEYSPACE" -v v="$VALUE" -v cmd=SET 'BEGIN { for (i = 0; i < n; i++) printf "%s k:%012d %s\r\n", cmd, i, v }' >"$TMP/fill.base"
for n in 0 1 2; do # one third of the keys through each node, at once
    awk -v n="$KEYSPACE" -v v="$VALUE" -v part="$n" 'BEGIN {
        for (i = part; i < n; i += 3) printf "RC.SET k:%012d %s\r\n", i, v }' >"$TMP/fill.n$n"
done
echo "pre-filling $KEYSPACE keys on the baseline and the cluster..." >&2
out=$(cli "$BASE_PORT" --pipe <"$TMP/fill.base" 2>&1) || die "pre-filling the baseline failed: $out"
[[ $out == *"errors: 0,"* ]] || die "pre-filling the baseline answered errors: $out"
fill_start=$SECONDS
for n in 0 1 2; do
    cli "${NODE_PORTS[n]}" --pipe <"$TMP/fill.n$n" >"$TMP/fill.n$n.out" 2>&1 &
    BENCH_PIDS+=($!)
done
for n in 0 1 2; do
    wait "${BENCH_PIDS[n]}" || die "pre-filling the cluster through n$((n + 1)) failed: $(cat "$TMP/fill.n$n.out")"
    grep -q 'errors: 0,' "$TMP/fill.n$n.out" ||
        die "pre-filling the cluster through n$((n + 1)) answered errors: $(cat "$TMP/fill.n$n.out")"
done
BENCH_PIDS=()
echo "pre-fill of the cluster took $((SECONDS - fill_start)) s" >&2

# Module-side error count over the three nodes: RC.SET/RC.GET errors plus error replies of any
# code other than plain ERR (NOQUORUM, INTERNAL, ... are answered asynchronously).
cluster_errors() {
    local total=0 port count
    for port in "${NODE_PORTS[@]}"; do
        count=$(
            {
                cli "$port" INFO rcluster
                cli "$port" INFO errorstats
            } | tr -d '\r' | awk -F'[=,:]' '
                /^rcluster_cmd_rc_(set|get):/ { s += $5 }
                /^errorstat_/ && $1 != "errorstat_ERR" { s += $3 }
                END { print s + 0 }'
        )
        total=$((total + count))
    done
    echo "$total"
}

# NOQUORUM replies counted by the coordinators, summed over the nodes.
noquorum_count() {
    local port
    for port in "${NODE_PORTS[@]}"; do
        cli "$port" INFO errorstats | tr -d '\r' | sed -n 's/^errorstat_NOQUORUM:count=\([0-9]*\).*/\1/p'
    done | awk '{ s += $1 } END { print s + 0 }'
}

# Quorum operations of one kind (set|get) that ended OK, summed over the coordinators.
quorum_ok() {
    local port
    for port in "${NODE_PORTS[@]}"; do
        cli "$port" INFO rcluster | tr -d '\r' | sed -n "s/^rcluster_quorum_$1:ok=\([0-9]*\),.*/\1/p"
    done | awk '{ s += $1 } END { print s + 0 }'
}

# Parses a redis-benchmark --csv file into "rps p50_ms p99_ms".
parse_csv() {
    local file=$1
    head -1 "$file" | grep -q 'p99_latency_ms' || die "unexpected redis-benchmark --csv output: $(cat "$file")"
    tail -1 "$file" | tr -d '"\r' | awk -F, '
        NF >= 8 && $(NF - 6) ~ /^[0-9.]+$/ { print $(NF - 6), $(NF - 3), $(NF - 1); ok = 1 }
        END { exit !ok }' || die "no result in redis-benchmark output: $(cat "$file")"
}

# Runs one redis-benchmark (port clients requests command...) into $TMP/<tag>.csv, in the background.
start_bench() {
    local tag=$1 port=$2 clients=$3 requests=$4
    shift 4
    redis-benchmark -p "$port" -c "$clients" -n "$requests" -r "$KEYSPACE" --csv "$@" \
        >"$TMP/$tag.csv" 2>"$TMP/$tag.err" &
    BENCH_PIDS+=($!)
}

# Waits for the running benchmarks; dies naming the error reply when one failed.
wait_benches() {
    local i failed=
    for i in "${!BENCH_PIDS[@]}"; do
        wait "${BENCH_PIDS[i]}" || failed+=" ${BENCH_PIDS[i]}"
    done
    BENCH_PIDS=()
    [[ -z $failed ]] || return 1
}

CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (user + system) a process has used so far.
cpu_secs() {
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.4f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}
# Sets CHILDREN to the CPU seconds (user + system) this shell's waited-for children have used
# so far (`times` must run in this shell, not in a $(...) subshell, which has children of its own).
CHILDREN=
children_secs() {
    times >"$TMP/times"
    CHILDREN=$(tail -1 "$TMP/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%.4f\n", t }')
}
# The redis-servers of a run mode: the baseline's, or n1 n2 n3.
server_pids() {
    local port
    if [[ $1 == base ]]; then
        echo "$BASE_PID"
        return
    fi
    for port in "${NODE_PORTS[@]}"; do
        pgrep -f "^redis-server [^ ]*:$port( |\$)" | head -1
    done
}
# CPU per request of the last run, in us: "client server1 [server2 server3]".
CPU=

# One measured run; sets RESULT to "rps p50 p99" and CPU. Modes: base (baseline Redis), one (50 clients
# on n1), spread (17/17/16 clients on n1/n2/n3 at once: summed rps, worst p50 and p99).
RESULT=
measure() {
    local mode=$1 what=$2 errors_before=0 errors_after nq_before=0 nq_after ok_before=0 ok_after op n part sent f
    shift 2
    op=$(tr '[:upper:]' '[:lower:]' <<<"${what#RC.}")
    if [[ $mode != base ]]; then
        errors_before=$(cluster_errors)
        nq_before=$(noquorum_count)
        ok_before=$(quorum_ok "$op")
    fi
    rm -f "$TMP"/run*.csv "$TMP"/run*.err
    local pids=() before=() client_before pid i
    read -r -a pids <<<"$(server_pids "$mode" | tr '\n' ' ')"
    for pid in "${pids[@]}"; do before+=("$(cpu_secs "$pid")"); done
    children_secs
    client_before=$CHILDREN
    case $mode in
    base) start_bench run0 "$BASE_PORT" "$CLIENTS" "$REQUESTS" "$@" ;;
    one) start_bench run0 "${NODE_PORTS[0]}" "$CLIENTS" "$REQUESTS" "$@" ;;
    spread)
        sent=0
        for n in 0 1 2; do
            if ((n < 2)); then part=$((REQUESTS * SPREAD_CLIENTS[n] / CLIENTS)); else part=$((REQUESTS - sent)); fi
            sent=$((sent + part))
            start_bench "run$n" "${NODE_PORTS[n]}" "${SPREAD_CLIENTS[n]}" "$part" "$@"
        done
        ;;
    esac
    if ! wait_benches; then
        local nq=
        [[ $mode == base ]] || nq=" (NOQUORUM replies during the run: $(($(noquorum_count) - nq_before)))"
        die "$what ($mode) failed$nq: $(cat "$TMP"/run*.err | tr '\r' '\n' | grep -v '^$' | tail -3 | tr '\n' ' ')"
    fi
    children_secs
    CPU=$(awk -v a="$client_before" -v b="$CHILDREN" -v n="$REQUESTS" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')
    for i in "${!pids[@]}"; do
        CPU+=" $(awk -v a="${before[i]}" -v b="$(cpu_secs "${pids[i]}")" -v n="$REQUESTS" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')"
    done
    if [[ $mode != base ]]; then
        errors_after=$(cluster_errors)
        nq_after=$(noquorum_count)
        ((errors_after == errors_before)) ||
            die "$what ($mode): the cluster answered $((errors_after - errors_before)) errors ($((nq_after - nq_before)) NOQUORUM) during the run; the figure is not valid"
        ok_after=$(quorum_ok "$op")
        ((ok_after - ok_before >= REQUESTS)) ||
            die "$what ($mode): the coordinators counted $((ok_after - ok_before)) successful quorum operations for $REQUESTS requests"
    fi
    : >"$TMP/parsed"
    for f in "$TMP"/run*.csv; do parse_csv "$f" >>"$TMP/parsed"; done
    RESULT=$(awk '{ rps += $1; if ($2 > p50) p50 = $2; if ($3 > p99) p99 = $3 }
        END { printf "%.2f %.3f %.3f\n", rps, p50, p99 }' "$TMP/parsed")
}

# Deletes the keys ideal:* on every node; prints how many went.
IDEAL_CLEAN='local n = 0 for _, k in ipairs(redis.call("KEYS", "ideal:*")) do redis.call("UNLINK", k) n = n + 1 end return n'
drop_ideal_keys() {
    local n out
    for n in 0 1 2; do
        out=$(cli "${NODE_PORTS[n]}" EVAL "$IDEAL_CLEAN" 0)
        [[ $out =~ ^[0-9]+$ ]] || die "deleting the ideal:* keys on n$((n + 1)) answered '$out'"
    done
}

# The bound: plain SET on the three nodes' Redis (keys ideal:*), every write stored three times,
# no coordination; sets RESULT to "rps".
measure_ideal() {
    local n part sent=0 started
    drop_ideal_keys
    rm -f "$TMP"/run*.csv "$TMP"/run*.err
    started=$EPOCHREALTIME
    for n in 0 1 2; do
        if ((n < 2)); then part=$((REQUESTS * SPREAD_CLIENTS[n] / CLIENTS)); else part=$((REQUESTS - sent)); fi
        sent=$((sent + part))
        start_bench "run$n" "${NODE_PORTS[n]}" "${SPREAD_CLIENTS[n]}" "$part" SET 'ideal:k:__rand_int__' "$VALUE"
        start_bench "run${n}r" "${NODE_PORTS[n]}" 2 $((REQUESTS * 2 / 3)) -P 8 SET 'ideal:r:__rand_int__' "$VALUE"
    done
    wait_benches || die "the ideal run failed: $(cat "$TMP"/run*.err | tr '\r' '\n' | grep -v '^$' | tail -3 | tr '\n' ' ')"
    RESULT=$(awk -v n="$REQUESTS" -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", n / (b - a) }')
    drop_ideal_keys
}

RUNS=(set_base set_ideal set_one set_spread get_base get_one get_spread)
declare -A RPS P50 P99
for r in "${RUNS[@]}"; do RPS[$r]="" P50[$r]="" P99[$r]=""; done
# CPU us per request, per round: client, then each server (CPU_<run>_<i>).
declare -A CPUS
# Runs one measurement (run label measure-args...) and keeps its figures.
record() {
    local run=$1 label=$2 rps p50 p99
    shift 2
    measure "$@"
    read -r rps p50 p99 <<<"$RESULT"
    RPS[$run]+=" $rps" P50[$run]+=" $p50" P99[$run]+=" $p99"
    local i=0 v
    for v in $CPU; do
        CPUS[${run}_$i]+=" $v"
        i=$((i + 1))
    done
    printf '  %-34s %10.0f req/s  p50 %7.3f ms  p99 %7.3f ms  CPU us/req: client %s, servers %s\n' \
        "$label" "$rps" "$p50" "$p99" "${CPU%% *}" "${CPU#* }" >&2
}

echo "redis $(redis_version), appendonly yes on all; baseline on port $BASE_PORT," \
    "cluster n1/n2/n3 on ${NODE_PORTS[*]} (N=3 W=2 R=2); $CLIENTS clients, $REQUESTS requests, -r $KEYSPACE," \
    "${#VALUE}-byte values, $ROUNDS rounds, $(nproc) CPUs" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    echo "round $round:" >&2
    record set_base "SET baseline" base SET SET 'k:__rand_int__' "$VALUE"
    measure_ideal
    RPS[set_ideal]+=" $RESULT"
    printf '  %-34s %10.0f req/s\n' "SET x3, no coordination (bound)" "$RESULT" >&2
    record set_one "RC.SET one entry (n1)" one RC.SET RC.SET 'k:__rand_int__' "$VALUE"
    record set_spread "RC.SET spread (n1+n2+n3)" spread RC.SET RC.SET 'k:__rand_int__' "$VALUE"
    record get_base "GET baseline" base GET GET 'k:__rand_int__'
    record get_one "RC.GET one entry (n1)" one RC.GET RC.GET 'k:__rand_int__'
    record get_spread "RC.GET spread (n1+n2+n3)" spread RC.GET RC.GET 'k:__rand_int__'
done

# Report: medians over the rounds.
echo
echo "medians of $ROUNDS rounds; $CLIENTS clients, $REQUESTS requests, -r $KEYSPACE, ${#VALUE}-byte values, appendonly yes"
echo "spread = 17/17/16 clients on n1/n2/n3 at once: req/s is the sum of the three, p50/p99 the worst of the three"
for op in set get; do
    OP=${op^^}
    base_rps=$(median -d 3 ${RPS[${op}_base]})
    printf '%-28s %10s %9s %9s %18s\n' "" "req/s" "p50 ms" "p99 ms" "ratio vs $OP"
    printf '%-28s %10.0f %9.3f %9.3f\n' "$OP baseline" "$base_rps" "$(median -d 3 ${P50[${op}_base]})" "$(median -d 3 ${P99[${op}_base]})"
    if [[ $op == set ]]; then
        ideal=$(median -d 3 ${RPS[set_ideal]})
        printf '%-28s %10.0f %9s %9s %18s\n' "SET x3, no coordination" "$ideal" "-" "-" \
            "$(awk -v a="$ideal" -v b="$base_rps" 'BEGIN { printf "%.2f (bound)", a / b }')"
    fi
    for way in one spread; do
        label="RC.$OP one entry (n1)"
        [[ $way == spread ]] && label="RC.$OP spread (n1+n2+n3)"
        run=${op}_$way
        rps=$(median -d 3 ${RPS[$run]})
        p99=$(median -d 3 ${P99[$run]})
        ratio=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.2f", a / b }')
        printf '%-28s %10.0f %9.3f %9.3f %18s\n' "$label" "$rps" "$(median -d 3 ${P50[$run]})" "$p99" "$ratio"
        verdicts=$(awk -v r="$ratio" -v t="$TARGET_RATIO" -v p="$p99" -v tp="$TARGET_P99_MS" -v op="$OP" 'BEGIN {
            if (op == "SET") printf "RC.SET >= %.1f x SET: %s (%.2f); ", t, (r >= t ? "met" : "MISSED"), r
            printf "p99 < %d ms: %s (%.3f ms)", tp, (p >= tp ? "MISSED" : "met"), p }')
        printf '  %-26s %s\n' "targets:" "$verdicts"
    done
done
# The CPU budget of a write (medians over the rounds).
cpu() { median -d 1 ${CPUS[$1]}; }
base_rps=$(median -d 3 ${RPS[set_base]})
echo "CPU per request (user + system, us): SET: server $(cpu set_base_1), client $(cpu set_base_0);" \
    "RC.SET one entry: servers n1 $(cpu set_one_1) + n2 $(cpu set_one_2) + n3 $(cpu set_one_3)" \
    "= $(awk -v a="$(cpu set_one_1)" -v b="$(cpu set_one_2)" -v c="$(cpu set_one_3)" 'BEGIN { printf "%.1f", a + b + c }')," \
    "client $(cpu set_one_0)"
awk -v cores="$(nproc)" -v rps="$base_rps" -v t="$TARGET_RATIO" -v client="$(cpu set_base_0)" -v server="$(cpu set_base_1)" \
    -v replicas="$(awk -v a="$(cpu set_one_2)" -v b="$(cpu set_one_3)" 'BEGIN { print a + b }')" 'BEGIN {
    budget = cores * 1e6 / (t * rps) - client
    printf "budget at %.1f x SET (%.0f writes/s) on %d cores: %.1f us of server CPU per write, of which taking and answering the client as a SET does costs %.1f;", t, t * rps, cores, budget, server
    printf " %.1f left for two replica writes and the coordination (the two replicas alone use %.1f)\n", budget - server, replicas }'
