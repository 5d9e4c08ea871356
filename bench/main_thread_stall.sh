#!/usr/bin/env bash
# Benchmark: the longest stall of Redis's main thread (target: under 5 ms) caused by the module in
# two paths: (1) the recount of what a node holds after a load (a restart on an RDB of KEYS
# registers), (2) RC.CHUNK.SET ... * of 5 MiB chunks (CHUNK_BYTES; SHA-256 and CRC-32C of each).
#
# Usage: bench/main_thread_stall.sh                 (KEYS=2000000 CHUNKS=20 WINDOW_S=8 by default)
#        KEYS=500000 bench/main_thread_stall.sh
#        OLD_MODULE=/work/wt-before/target/release/librcluster_module.so bench/main_thread_stall.sh
# A probe process PINGs the server in a loop on its own connection and reports the longest round
# trip: for (1) from the start until WINDOW_S seconds after the load (the PINGs answered LOADING
# are left out: the load blocks every server alike and its length is printed apart; a restart and
# not DEBUG RELOAD, whose reply comes only after the first cron tick that follows it, so a stall
# there would be hidden in the reload), for (2) while the chunks are written one after another.
# Baseline: a plain redis-server doing the same work: the load of KEYS hashes of the same layout
# (kv:<key> with value, version, origin, tombstone), and SET of the same 5 MiB values.
# Prints ours, the baseline and the ratio; with OLD_MODULE, also that module (for example the
# build from before the recount ran in steps and the chunk hashing left the main thread).
# Each server runs alone (appendonly no, no maxmemory). Redis's LATENCY monitor also reports the
# longest chunk command (its own time on the main thread). Exits non-zero only when the setup fails.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEYS=${KEYS:-2000000}
CHUNKS=${CHUNKS:-20}
CHUNK_BYTES=${CHUNK_BYTES:-5242880}
WINDOW_S=${WINDOW_S:-8}
OLD_MODULE=${OLD_MODULE:-}
TARGET_MS=5

require_tools cargo redis-server redis-cli python3
require_positive_int KEYS
require_positive_int CHUNKS
require_positive_int CHUNK_BYTES
require_positive_int WINDOW_S
[[ -z $OLD_MODULE || -f $OLD_MODULE ]] || die "OLD_MODULE=$OLD_MODULE is not a file"

cargo_build "the module (release)" --release -p rcluster-module
require_built module

make_tmp stall
CLEANUP_OK="redis-servers"
install_cleanup
free_ports 1
PORT=${PORTS[0]}
REDIS_PORTS=("$PORT")

# The Python side: bulk loading, the PING probe and the chunk writer (separate processes, so the
# probe's timing never waits on the loader).
cat >"$TMP/stall.py" <<'EOF'
import hashlib, os, signal, socket, sys, time

def connect(port):
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb")

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

def read_reply(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"-":
        raise SystemExit("error reply: " + rest.decode(errors="replace"))
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    return rest

def load(port, kind, n):
    """n registers: RC.REPLICA.PUT (ours) or HSET of the same layout (plain), pipelined."""
    s, f = connect(port)
    batch = 10000
    for start in range(0, int(n), batch):
        cmds = []
        for i in range(start, min(start + batch, int(n))):
            if kind == "ours":
                cmds.append(resp("RC.REPLICA.PUT", f"k{i}", "v", 1000 + i, "n1"))
            else:
                cmds.append(resp("HSET", f"kv:k{i}", "value", "v", "version", 1000 + i,
                                 "origin", "n1", "tombstone", "0"))
        s.sendall(b"".join(cmds))
        for _ in cmds:
            read_reply(f)

def probe(port, seconds):
    """PINGs for `seconds` or until SIGTERM; prints the longest and the 99th-percentile round trip
    (ms) and the count."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s, f = connect(port)
    rtts = []
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end and not stop:
        t = time.perf_counter()
        s.sendall(b"PING\r\n")
        f.readline()
        rtts.append((time.perf_counter() - t) * 1000)
    rtts.sort()
    print(f"{rtts[-1]:.2f} {rtts[int(len(rtts) * 0.99)]:.2f} {len(rtts)}")

def after_start(port, seconds):
    """Connects to a Redis that is starting (retrying for 60 s) and PINGs until `seconds` after its
    first PONG. Prints the longest and the 99th-percentile round trip of the PINGs answered PONG
    (the first of them may have waited through the end of the load), their count, and the ms from
    the first connection to the first PONG."""
    deadline = time.monotonic() + 60
    while True:
        try:
            s, f = connect(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 60 s")
            time.sleep(0.005)
    started, first = time.monotonic(), None
    rtts = []
    while first is None or time.monotonic() - first < float(seconds):
        t = time.perf_counter()
        s.sendall(b"PING\r\n")
        line = f.readline()
        if line.startswith(b"+PONG"):
            rtts.append((time.perf_counter() - t) * 1000)
            first = first or time.monotonic()
        elif not line.startswith(b"-LOADING"):
            raise SystemExit(f"PING answered {line!r}")
    rtts.sort()
    print(f"{rtts[-1]:.2f} {rtts[int(len(rtts) * 0.99)]:.2f} {len(rtts)} {(first - started) * 1000:.0f}")

def chunks(port, kind, n, size):
    """n chunks of `size` bytes, one after another: RC.CHUNK.SET ... * (ours, digest checked) or SET."""
    s, f = connect(port)
    for i in range(int(n)):
        data = os.urandom(int(size))
        if kind == "ours":
            s.sendall(resp("RC.CHUNK.SET", f"f{i}", 0, "*", data, "W", 1))
            got = read_reply(f)
            if got != hashlib.sha256(data).hexdigest().encode():
                raise SystemExit(f"RC.CHUNK.SET answered {got!r}, not the digest")
        else:
            s.sendall(resp("SET", f"chunk:f{i}:0", data))
            read_reply(f)

if __name__ == "__main__":
    commands = {"load": load, "probe": probe, "after_start": after_start, "chunks": chunks}
    commands[sys.argv[1]](*sys.argv[2:])
EOF
stall() { python3 "$TMP/stall.py" "$@"; }

# run_server WHAT MODULE: a redis-server alone on PORT (MODULE empty: plain) on the data dir of
# WHAT, in the background.
run_server() {
    if [[ -n $2 ]]; then
        start_redis "$PORT" "$TMP/$1" --appendonly no --maxmemory 0 --loadmodule "$2" node-id n1
    else
        start_redis "$PORT" "$TMP/$1" --appendonly no --maxmemory 0
    fi
}

# start_server WHAT MODULE: run_server on a fresh data dir; waits until it answers and pushes a
# one-node topology to the module.
start_server() {
    rm -rf "${TMP:?}/$1"
    run_server "$1" "$2"
    wait_redis "$PORT" "the $1 redis-server"
    cli "$PORT" CONFIG SET latency-monitor-threshold 1 >/dev/null
    if [[ -n $2 ]]; then
        cli "$PORT" RC.CLUSTER.SET "{\"epoch\":1,\"members\":[{\"id\":\"n1\",\"host\":\"127.0.0.1\",\"redis_port\":$PORT}],\"vnodes\":1,\"quorum\":{\"n\":1,\"w\":1,\"r\":1},\"request_timeout_ms\":10000,\"hint_replay_ms\":1000,\"tombstone_grace_ms\":86400000}" >/dev/null
    fi
}

stop_server() {
    stop_pids "$BASE_PID"
    BASE_PID=
}

# The longest sample (ms) of a Redis LATENCY monitor event since the last LATENCY RESET (0: none
# above the 1 ms threshold).
latency_max() {
    cli "$PORT" LATENCY LATEST | tr -d '\r' | awk -v e="$1" '$0 == e { n = NR } n && NR == n + 3 { print; found = 1 } END { if (!found) print 0 }'
}

# The module's recount_in_progress (empty on a plain server).
recounting() {
    cli "$PORT" INFO rcluster | tr -d '\r' | sed -n 's/^rcluster_recount_in_progress://p'
}

# measure WHAT MODULE KIND: runs both paths on one server; sets RESULT to
# "load_ms stall_after_load_ms p99 chunk_stall_ms p99 chunk_command_ms" (the last: the
# longest chunk command in Redis's LATENCY monitor, its time on the main thread).
measure() {
    local what=$1 module=$2 kind=$3 reload_ms after chunk probe_pid i command_ms
    start_server "$what" "$module"
    echo "$what: loading $KEYS registers..." >&2
    stall load "$PORT" "$kind" "$KEYS"
    # Let a recount of the load itself (if any) finish first.
    for ((i = 0; i < 600; i++)); do
        [[ $(recounting) == 1 ]] || break
        sleep 0.1
    done
    # Restart from the RDB: the module recounts after the load.
    cli "$PORT" SAVE >/dev/null
    stop_server
    echo "$what: restarting on its RDB, probing until ${WINDOW_S} s after the load..." >&2
    run_server "$what" "$module"
    after=$(stall after_start "$PORT" "$WINDOW_S")
    [[ $(recounting) != 1 ]] || echo "$what: the recount was still running after ${WINDOW_S} s (raise WINDOW_S)" >&2
    cli "$PORT" CONFIG SET latency-monitor-threshold 1 >/dev/null
    cli "$PORT" FLUSHALL >/dev/null
    sleep 1
    cli "$PORT" LATENCY RESET >/dev/null
    echo "$what: $CHUNKS chunks while probing..." >&2
    python3 "$TMP/stall.py" probe "$PORT" 600 >"$TMP/probe.out" &
    probe_pid=$!
    BENCH_PIDS+=("$probe_pid")
    sleep 0.5
    stall chunks "$PORT" "$kind" "$CHUNKS" "$CHUNK_BYTES"
    kill -TERM "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" || die "the probe failed"
    chunk=$(cat "$TMP/probe.out")
    command_ms=$(latency_max command)
    stop_server
    read -r a_max a_p99 _ reload_ms <<<"$after"
    read -r c_max c_p99 _ <<<"$chunk"
    RESULT="$reload_ms $a_max $a_p99 $c_max $c_p99 $command_ms"
}

echo "redis-server $(redis_version), $KEYS registers, $CHUNKS chunks of $CHUNK_BYTES bytes," \
    "probe window ${WINDOW_S} s after the reload" >&2
measure baseline "" plain
read -r b_reload b_after b_after99 b_chunk b_chunk99 b_cmd <<<"$RESULT"
measure ours "$MODULE" ours
read -r o_reload o_after o_after99 o_chunk o_chunk99 o_cmd <<<"$RESULT"
if [[ -n $OLD_MODULE ]]; then
    measure old "$OLD_MODULE" ours
    read -r x_reload x_after x_after99 x_chunk x_chunk99 x_cmd <<<"$RESULT"
fi
awk -v br="$b_reload" -v ba="$b_after" -v ba9="$b_after99" -v bc="$b_chunk" -v bc9="$b_chunk99" \
    -v or="$o_reload" -v oa="$o_after" -v oa9="$o_after99" -v oc="$o_chunk" -v oc9="$o_chunk99" \
    -v t="$TARGET_MS" -v bx="$b_cmd" -v ox="$o_cmd" -v k="$KEYS" -v cb="$CHUNK_BYTES" 'BEGIN {
    printf "after a restart on %s registers: longest stall ours %.2f ms | plain redis %.2f ms | ratio %.2f (target < %d ms)\n", k, oa, ba, oa / ba, t
    printf "    p99 ping ours %.2f ms | plain %.2f ms; the load itself: ours %d ms | plain %d ms\n", oa9, ba9, or, br
    printf "%s-byte chunks: longest stall ours (RC.CHUNK.SET *) %.2f ms | plain SET %.2f ms | ratio %.2f (target < %d ms)\n", cb, oc, bc, oc / bc, t
    printf "    p99 ping ours %.2f ms | plain %.2f ms; longest command (LATENCY monitor): ours %d ms | plain %d ms\n", oc9, bc9, ox, bx
}'
if [[ -n $OLD_MODULE ]]; then
    awk -v xa="$x_after" -v xc="$x_chunk" -v xr="$x_reload" -v oa="$o_after" -v oc="$o_chunk" -v xx="$x_cmd" 'BEGIN {
        printf "old module: longest stall after the restart %.2f ms (ours/old %.2f), chunks %.2f ms (ours/old %.2f); its load %d ms, longest chunk command %d ms\n", xa, oa / xa, xc, oc / xc, xr, xx
    }'
fi
