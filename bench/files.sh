#!/usr/bin/env bash
# Benchmark: file upload / download through the HTTP API of a local 3-node cluster against plain SET / GET of the same chunks on one redis-server (targets: upload >= 0.3 x baseline write, download >= 0.6 x baseline read).
#
# Usage: bench/files.sh                       (SIZE_MB=256 ROUNDS=3 CHUNK_MB=1 by default)
#        SIZE_MB=64 ROUNDS=5 bench/files.sh
#        CHUNK_MB=4 bench/files.sh            (chunk_size_bytes = CHUNK_MB MiB, 1..5)
# Builds release, starts a 3-node cluster with `rcluster up` (N=3, W=2, R=2, chunk_size_bytes =
# CHUNK_MB MiB, redis_maxmemory_mb 2048) on free ports and one plain redis-server (repo redis.conf,
# appendonly yes, no module, maxmemory 2gb) as the baseline, writes one random file of SIZE_MB MiB
# in the temp folder, then runs ROUNDS rounds of
#   baseline write + read, 1 in flight | baseline write + read, 3 in flight |
#   baseline read through a bare relay (the bound) |
#   cluster upload + download (Python) | cluster upload + download (curl)
# and prints the medians in MB/s (MB = MiB).
#   cluster upload:   POST /api/files?name=... to n1 with the file as the body (the node cuts it
#                     into chunks and keeps 4 quorum chunk writes in flight); the returned sha256
#                     must equal sha256sum of the file.
#   cluster download: GET /api/files/<id>/content from n2 into a file; its sha256 must match.
#                     Both with the same small Python client as the baseline (standard library
#                     http.client, 1 MiB reads and writes, connection and file I/O included): the
#                     ratios use these, so both sides pay the same client. Then again with curl
#                     (time_total; loading the file for the upload not included), shown for
#                     reference: curl reads a response 100 KB at a time and spends most of a core
#                     on a 256 MiB download, so on two cores it, not the cluster, sets that figure.
#   baseline:         the Python client (standard library, raw RESP over one socket) sends the
#                     file as SET file:chunk:<i> <CHUNK_MB MiB> and reads it back with GET into a
#                     file (sha256 checked), waiting for each reply (1 in flight) or keeping 3
#                     requests in flight (like the uploader); connection included in the time.
#                     The better variant of each (write, read) is the one the ratios use.
#   bound:            the same baseline read (3 in flight) through a bare relay: a second
#                     process that only passes the bytes on between two sockets (baseline.py
#                     relay: 1 MiB recv_into + sendall, one thread per direction, no HTTP, no
#                     checks). Any design where the bytes cross a process beside Redis (as they
#                     cross the node process, which serves the HTTP API) pays at least this: one
#                     more copy in and one more copy out of the kernel, on the same two cores. A
#                     Rust relay (blocking read/write, and one with splice) measured the same or
#                     slower here.
# Warm reads: every timed read (baseline GETs, cluster downloads) follows an untimed read of the
# same data. The first read after a write pays for fresh pages in Redis's reply buffers (its
# allocator returned them to the system meanwhile): on this machine a baseline read of 256 MiB
# then took 0.07 s or 0.13 s depending on that, which made the ratio swing by half.
# Between the runs the baseline is flushed (FLUSHALL SYNC) and the cluster file deleted, so every
# write starts from an empty store, and every timed phase waits until no Redis of the run is
# rewriting its AOF (the rewrite a 256 MiB write triggers would otherwise run during the next
# phase: in three Redis servers after an upload, in one after a baseline write). Exits non-zero only when the setup fails (build, start, a
# transfer failing or returning the wrong data, processes left behind), never because a target
# was missed.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-256}
ROUNDS=${ROUNDS:-3}
CHUNK_MB=${CHUNK_MB:-1}
MAXMEMORY_MB=2048
DEPTHS=(1 3) # baseline variants: requests in flight
TARGET_UPLOAD=0.3
TARGET_DOWNLOAD=0.6
READY_TIMEOUT_S=90

require_tools cargo redis-server redis-cli curl python3 sha256sum pgrep
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] && ((SIZE_MB <= 1024)) || die "SIZE_MB must be an integer in 1..1024 (files.max_file_bytes is 1 GiB), got '$SIZE_MB'"
require_positive_int ROUNDS
[[ $CHUNK_MB =~ ^[1-5]$ ]] || die "CHUNK_MB must be 1..5 (chunk_size_bytes is 1..5 MiB), got '$CHUNK_MB'"
SIZE=$((SIZE_MB * 1048576))
CHUNK=$((CHUNK_MB * 1048576))
CHUNKS=$(((SIZE + CHUNK - 1) / CHUNK))

build_release

# Temp dir, cleanup (node processes and the Python client carry paths in $TMP), ports (NODE_PORTS:
# n1 n2 n3, HTTP_PORTS; BASE_PORT) and $CONFIG.
baseline_setup files "chunk_size_bytes: $CHUNK
redis_maxmemory_mb: $MAXMEMORY_MB"

# The benchmark client. Baseline: one socket, raw RESP, N requests in flight. Cluster: HTTP, 1 MiB
# blocks.
#   baseline.py write <port> <depth> <file> <chunk>        -> "<seconds>"
#   baseline.py read  <port> <depth> <out> <chunk> <size>  -> "<seconds>"
#   baseline.py upload <port> <key> <file> <name> <answer> -> "<seconds>" (the JSON answer in <answer>)
#   baseline.py download <port> <key> <id> <out>           -> "<seconds>"
#   baseline.py relay <listen-port> <upstream-port>        (runs until killed)
cat >"$TMP/baseline.py" <<'EOF'
import http.client, os, socket, sys, time

def bulk(b):
    return b"$%d\r\n" % len(b)

def reply(r):
    line = r.readline()
    if not line.endswith(b"\r\n"):
        raise SystemExit("connection closed")
    kind = line[:1]
    if kind == b"-":
        raise SystemExit("error reply: " + line.decode(errors="replace").strip())
    if kind == b"$":
        n = int(line[1:-2])
        if n < 0:
            raise SystemExit("GET answered nil")
        data = r.read(n + 2)
        if len(data) != n + 2:
            raise SystemExit("connection closed")
        return memoryview(data)[:n]
    return line

BLOCK = 1 << 20

def upload(port, key, path, name, answer):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.putrequest("POST", "/api/files?name=" + name)
    c.putheader("Authorization", "Bearer " + key)
    c.putheader("Content-Type", "application/octet-stream")
    c.putheader("Content-Length", str(os.path.getsize(path)))
    c.endheaders()
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            if not block:
                break
            c.send(block)
    r = c.getresponse()
    body = r.read()
    secs = time.perf_counter() - t0
    if r.status != 201:
        raise SystemExit("upload answered HTTP %d: %s" % (r.status, body[:500]))
    with open(answer, "wb") as f:
        f.write(body)
    print("%.6f" % secs)

def download(port, key, file_id, out):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/api/files/%s/content" % file_id, headers={"Authorization": "Bearer " + key})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("download answered HTTP %d: %s" % (r.status, r.read()[:500]))
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(out, "wb") as f:
        while True:
            n = r.readinto(buf)
            if not n:
                break
            f.write(view[:n])
    print("%.6f" % (time.perf_counter() - t0))

def pump(a, b):
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    try:
        while True:
            n = a.recv_into(buf)
            if not n:
                break
            b.sendall(view[:n])
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def relay(listen, upstream):
    import threading
    server = socket.create_server(("127.0.0.1", listen))
    while True:
        client, _ = server.accept()
        up = socket.create_connection(("127.0.0.1", upstream))
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(client, up), daemon=True).start()
        threading.Thread(target=pump, args=(up, client), daemon=True).start()

def main():
    if sys.argv[1] == "relay":
        return relay(int(sys.argv[2]), int(sys.argv[3]))
    if sys.argv[1] == "upload":
        return upload(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
    if sys.argv[1] == "download":
        return download(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    mode, port, depth, path, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = s.makefile("rb", buffering=1 << 20)
    in_flight = 0
    if mode == "write":
        with open(path, "rb") as f:
            i = 0
            while True:
                data = f.read(chunk)
                if not data:
                    break
                key = b"file:chunk:%d" % i
                s.sendall(b"*3\r\n$3\r\nSET\r\n" + bulk(key) + key + b"\r\n" + bulk(data) + data + b"\r\n")
                i += 1
                in_flight += 1
                while in_flight >= depth:
                    if reply(r) != b"+OK\r\n":
                        raise SystemExit("SET did not answer OK")
                    in_flight -= 1
            while in_flight:
                if reply(r) != b"+OK\r\n":
                    raise SystemExit("SET did not answer OK")
                in_flight -= 1
    else:
        size = int(sys.argv[6])
        count = (size + chunk - 1) // chunk
        sent = 0
        with open(path, "wb") as out:
            for _ in range(count):
                while sent < count and in_flight < depth:
                    key = b"file:chunk:%d" % sent
                    s.sendall(b"*2\r\n$3\r\nGET\r\n" + bulk(key) + key + b"\r\n")
                    sent += 1
                    in_flight += 1
                out.write(reply(r))
                in_flight -= 1
    s.close()
    print("%.6f" % (time.perf_counter() - t0))

main()
EOF

FILE=$TMP/file.bin
echo "writing a random file of $SIZE_MB MiB..." >&2
head -c "$SIZE" /dev/urandom >"$FILE" || die "cannot write $FILE"
FILE_SHA=$(sha256sum "$FILE" | cut -d' ' -f1)

start_cluster_and_baseline --maxmemory 2gb
# The bare relay in front of the baseline (see "bound" above), on SPARE_PORT.
python3 "$TMP/baseline.py" relay "$SPARE_PORT" "$BASE_PORT" 2>"$TMP/relay.err" &
BENCH_PIDS+=($!)
for ((i = 0; i < 100; i++)); do
    port_busy "$SPARE_PORT" && break
    sleep 0.05
done
port_busy "$SPARE_PORT" || die "the relay did not start listening on port $SPARE_PORT: $(cat "$TMP/relay.err")"
for port in "${NODE_PORTS[@]}"; do
    mm=$(cli "$port" CONFIG GET maxmemory | tail -1)
    ((mm == MAXMEMORY_MB * 1048576)) || die "the redis-server on port $port has maxmemory $mm, not $MAXMEMORY_MB MB"
done

# used_memory of a redis-server, in MiB.
used_mb() {
    cli "$1" INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ { printf "%.0f", $2 / 1048576 }'
}

# Largest VmRSS (MiB) among the node processes (the children of `rcluster up`).
node_rss_mb() {
    local pid max=0 kb
    for pid in $(pgrep -P "$UP_PID"); do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        ((kb > max)) && max=$kb
    done
    echo $((max / 1024))
}

# MiB/s for SIZE bytes in the given seconds.
mbps() {
    awk -v s="$1" -v b="$SIZE" 'BEGIN { printf "%.1f", b / 1048576 / s }'
}

# One baseline run (write|read depth [port]); prints MB/s. Reads go to PORT (default BASE_PORT:
# the relay's port reads through the relay).
baseline_run() {
    local mode=$1 depth=$2 port=${3:-$BASE_PORT} secs sha
    if [[ $mode == write ]]; then
        secs=$(python3 "$TMP/baseline.py" write "$BASE_PORT" "$depth" "$FILE" "$CHUNK" 2>"$TMP/py.err") ||
            die "baseline write ($depth in flight) failed: $(cat "$TMP/py.err")"
        [[ $(cli "$BASE_PORT" DBSIZE) == "$CHUNKS" ]] || die "baseline write left $(cli "$BASE_PORT" DBSIZE) keys, not $CHUNKS"
    else
        # A first, untimed read warms the path (see "warm reads" above), then the timed one.
        python3 "$TMP/baseline.py" read "$port" "$depth" "$TMP/base.out" "$CHUNK" "$SIZE" >/dev/null 2>"$TMP/py.err" ||
            die "baseline read ($depth in flight) failed: $(cat "$TMP/py.err")"
        rm -f "$TMP/base.out"
        secs=$(python3 "$TMP/baseline.py" read "$port" "$depth" "$TMP/base.out" "$CHUNK" "$SIZE" 2>"$TMP/py.err") ||
            die "baseline read ($depth in flight) failed: $(cat "$TMP/py.err")"
        sha=$(sha256sum "$TMP/base.out" | cut -d' ' -f1)
        rm -f "$TMP/base.out"
        [[ $sha == "$FILE_SHA" ]] || die "baseline read ($depth in flight) returned other data (sha256 $sha)"
    fi
    mbps "$secs"
}

# Waits (up to 120 s) until no Redis of the run (baseline and nodes) rewrites its AOF, so a timed
# phase never shares the CPU with the previous phase's background rewrite (a fork that writes the
# whole dataset again).
settle() {
    local port waited=0
    for port in "$BASE_PORT" "${NODE_PORTS[@]}"; do
        while cli "$port" INFO persistence | grep -qE '^aof_rewrite_(in_progress|scheduled):1'; do
            ((waited++ < 1200)) || die "redis on port $port still rewrites its AOF after 120 s"
            sleep 0.1
        done
    done
    sync # and the previous phase's AOF pages reach the disk now, not during the next phase
}

# Checks the upload answer in $TMP/upload.json and sets FILE_ID.
FILE_ID=
check_upload() {
    local id sha size count
    read -r id sha size count < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1])); print(m["id"], m["sha256"], m["size"], m["chunk_count"])' "$TMP/upload.json") ||
        die "upload answer is not the expected JSON: $(head -c 500 "$TMP/upload.json")"
    [[ $sha == "$FILE_SHA" ]] || die "upload returned sha256 $sha, the file has $FILE_SHA"
    [[ $size == "$SIZE" && $count == "$CHUNKS" ]] || die "upload returned size $size / $count chunks, expected $SIZE / $CHUNKS"
    FILE_ID=$id
}

# Checks the downloaded $TMP/download.out against the file, then removes it.
check_download() {
    local sha
    sha=$(sha256sum "$TMP/download.out" | cut -d' ' -f1)
    rm -f "$TMP/download.out"
    [[ $sha == "$FILE_SHA" ]] || die "download returned other data (sha256 $sha)"
}

# Cluster upload to n1 with CLIENT (python|curl); sets FILE_ID and UPLOAD_MBPS.
UPLOAD_MBPS=
cluster_upload() {
    local out code secs
    if [[ $1 == python ]]; then
        secs=$(python3 "$TMP/baseline.py" upload "${HTTP_PORTS[0]}" "$ADMIN_KEY" "$FILE" "bench-$SIZE_MB.bin" \
            "$TMP/upload.json" 2>"$TMP/py.err") || die "upload (Python) failed: $(cat "$TMP/py.err")"
    else
        out=$(curl -s -X POST -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/octet-stream' \
            -H 'Expect:' --data-binary "@$FILE" -o "$TMP/upload.json" -w '%{http_code} %{time_total}' \
            "http://127.0.0.1:${HTTP_PORTS[0]}/api/files?name=bench-$SIZE_MB.bin") || die "curl upload failed (exit $?)"
        read -r code secs <<<"$out"
        [[ $code == 201 ]] || die "upload answered HTTP $code: $(head -c 500 "$TMP/upload.json")"
    fi
    check_upload
    UPLOAD_MBPS=$(mbps "$secs")
}

# Cluster download of FILE_ID from n2 with CLIENT (python|curl), after an untimed warm-up
# download (see "warm reads" above); prints MB/s.
cluster_download() {
    local out code secs
    python3 "$TMP/baseline.py" download "${HTTP_PORTS[1]}" "$READ_KEY" "$FILE_ID" "$TMP/download.out" \
        >/dev/null 2>"$TMP/py.err" || die "download (Python, warm-up) failed: $(cat "$TMP/py.err")"
    check_download
    if [[ $1 == python ]]; then
        secs=$(python3 "$TMP/baseline.py" download "${HTTP_PORTS[1]}" "$READ_KEY" "$FILE_ID" "$TMP/download.out" \
            2>"$TMP/py.err") || die "download (Python) failed: $(cat "$TMP/py.err")"
    else
        out=$(curl -s -H "Authorization: Bearer $READ_KEY" -o "$TMP/download.out" -w '%{http_code} %{time_total}' \
            "http://127.0.0.1:${HTTP_PORTS[1]}/api/files/$FILE_ID/content") || die "curl download failed (exit $?)"
        read -r code secs <<<"$out"
        [[ $code == 200 ]] || die "download answered HTTP $code: $(head -c 500 "$TMP/download.out")"
    fi
    check_download
    mbps "$secs"
}

cluster_delete() {
    local code
    code=$(curl -s -X DELETE -H "Authorization: Bearer $ADMIN_KEY" -o "$TMP/delete.json" -w '%{http_code}' \
        "http://127.0.0.1:${HTTP_PORTS[0]}/api/files/$FILE_ID") || die "curl delete failed"
    [[ $code == 200 ]] || die "delete answered HTTP $code: $(head -c 500 "$TMP/delete.json")"
}

declare -A MBPS
for r in write1 read1 write3 read3 relay upload_python download_python upload_curl download_curl; do MBPS[$r]=""; done
NODE_MEM_MAX=0
NODE_RSS_MAX=0
BASE_MEM_MAX=0

echo "redis $(redis_version), appendonly yes on all; baseline on port $BASE_PORT," \
    "cluster n1/n2/n3 on ${NODE_PORTS[*]} (HTTP ${HTTP_PORTS[*]}; N=3 W=2 R=2); file $SIZE_MB MiB," \
    "chunks $CHUNK_MB MiB ($CHUNKS), $ROUNDS rounds, $(nproc) CPUs" >&2
for ((round = 1; round <= ROUNDS; round++)); do
    echo "round $round:" >&2
    for depth in "${DEPTHS[@]}"; do
        [[ $(cli "$BASE_PORT" FLUSHALL SYNC) == OK ]] || die "FLUSHALL on the baseline failed"
        settle
        v=$(baseline_run write "$depth")
        MBPS[write$depth]+=" $v"
        printf '  %-40s %8s MB/s\n' "baseline SET, $depth in flight" "$v" >&2
        m=$(used_mb "$BASE_PORT")
        ((m > BASE_MEM_MAX)) && BASE_MEM_MAX=$m
        settle
        v=$(baseline_run read "$depth")
        MBPS[read$depth]+=" $v"
        printf '  %-40s %8s MB/s\n' "baseline GET, $depth in flight" "$v" >&2
    done
    settle
    v=$(baseline_run read 3 "$SPARE_PORT")
    MBPS[relay]+=" $v"
    printf '  %-40s %8s MB/s\n' "baseline GET through a relay (bound)" "$v" >&2
    [[ $(cli "$BASE_PORT" FLUSHALL SYNC) == OK ]] || die "FLUSHALL on the baseline failed"

    for client in python curl; do
        settle
        cluster_upload "$client"
        MBPS[upload_$client]+=" $UPLOAD_MBPS"
        printf '  %-40s %8s MB/s\n' "cluster upload (n1, $client)" "$UPLOAD_MBPS" >&2
        mems=""
        for port in "${NODE_PORTS[@]}"; do
            m=$(used_mb "$port")
            mems+=" $m"
            ((m > NODE_MEM_MAX)) && NODE_MEM_MAX=$m
        done
        rss=$(node_rss_mb)
        ((rss > NODE_RSS_MAX)) && NODE_RSS_MAX=$rss
        settle
        v=$(cluster_download "$client")
        MBPS[download_$client]+=" $v"
        printf '  %-40s %8s MB/s\n' "cluster download (n2, $client)" "$v" >&2
        rss=$(node_rss_mb)
        ((rss > NODE_RSS_MAX)) && NODE_RSS_MAX=$rss
        cluster_delete
    done
    echo "  (redis used_memory after the upload, n1/n2/n3:$mems MiB; node RSS max so far $NODE_RSS_MAX MiB)" >&2
done

# Report: medians over the rounds.
echo
echo "medians of $ROUNDS rounds; file $SIZE_MB MiB in $CHUNKS chunks of $CHUNK_MB MiB, appendonly yes, MB = MiB"
declare -A MED
for r in write1 write3 read1 read3 relay upload_python download_python upload_curl download_curl; do MED[$r]=$(median ${MBPS[$r]}); done
best() { # op -> "depth"
    awk -v a="${MED[${1}1]}" -v b="${MED[${1}3]}" 'BEGIN { print (b > a ? 3 : 1) }'
}
BW=$(best write)
BR=$(best read)
printf '%-44s %10s\n' "" "MB/s"
printf '%-44s %10s%s\n' "(c) baseline SET, 1 in flight" "${MED[write1]}" "$([[ $BW == 1 ]] && echo '   <- better')"
printf '%-44s %10s%s\n' "(c) baseline SET, 3 in flight" "${MED[write3]}" "$([[ $BW == 3 ]] && echo '   <- better')"
printf '%-44s %10s%s\n' "(d) baseline GET, 1 in flight" "${MED[read1]}" "$([[ $BR == 1 ]] && echo '   <- better')"
printf '%-44s %10s%s\n' "(d) baseline GET, 3 in flight" "${MED[read3]}" "$([[ $BR == 3 ]] && echo '   <- better')"
printf '%-44s %10s\n' "(e) baseline GET, 3 in flight, via a relay" "${MED[relay]}"
printf '%-44s %10s\n' "(a) cluster upload to n1 (W=2 of 3 copies)" "${MED[upload_python]}"
printf '%-44s %10s\n' "(b) cluster download from n2" "${MED[download_python]}"
printf '%-44s %10s\n' "    the same with curl: upload" "${MED[upload_curl]}"
printf '%-44s %10s\n' "                        download" "${MED[download_curl]}"
up_ratio=$(awk -v a="${MED[upload_python]}" -v b="${MED[write$BW]}" 'BEGIN { printf "%.2f", a / b }')
down_ratio=$(awk -v a="${MED[download_python]}" -v b="${MED[read$BR]}" 'BEGIN { printf "%.2f", a / b }')
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "met" : "MISSED") }'; }
printf 'targets: upload / baseline write (%s in flight) >= %s: %s (%s)\n' "$BW" "$TARGET_UPLOAD" "$(verdict "$up_ratio" "$TARGET_UPLOAD")" "$up_ratio"
printf '         download / baseline read (%s in flight) >= %s: %s (%s)\n' "$BR" "$TARGET_DOWNLOAD" "$(verdict "$down_ratio" "$TARGET_DOWNLOAD")" "$down_ratio"
bound_ratio=$(awk -v a="${MED[relay]}" -v b="${MED[read$BR]}" 'BEGIN { printf "%.2f", a / b }')
echo "bound:   baseline read through a bare relay / baseline read = $bound_ratio (a process that only passes bytes on, the least any" \
    "second process in the path costs here); download / that = $(awk -v a="${MED[download_python]}" -v b="${MED[relay]}" 'BEGIN { printf "%.2f", a / b }')"
echo "memory: redis used_memory max after an upload $NODE_MEM_MAX MiB per node (maxmemory $MAXMEMORY_MB), baseline max $BASE_MEM_MAX MiB;" \
    "node process RSS max $NODE_RSS_MAX MiB"
