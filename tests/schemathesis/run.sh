#!/usr/bin/env bash
# API conformance test: fuzzes a local 3-node cluster's HTTP API with schemathesis against the
# OpenAPI document the nodes serve (GET /api/openapi.json, sidecar/src/openapi.json).
#
# Usage: bash tests/schemathesis/run.sh            (MAX_EXAMPLES=50 TIME_LIMIT_S=180 SEED=1 by default)
#        MAX_EXAMPLES=200 SEED=random bash tests/schemathesis/run.sh
# Creates (once) a Python venv in target/schemathesis-venv with requirements.txt, builds the
# workspace (debug), starts a cluster with `target/debug/rcluster up` on free ports (data in a temp
# folder, files.max_file_bytes 10 MiB so fuzzed uploads stay small, API rate limit raised so the
# fuzzer is not answered 429 throughout), waits for "cluster ready", then runs schemathesis against
# node 1 with the admin key: checks not_a_server_error, status_code_conformance and
# response_schema_conformance, at most MAX_EXAMPLES examples per operation, the whole run bounded by
# TIME_LIMIT_S; the document's links are followed too (upload -> metadata/download/delete, put ->
# get/delete). POST /api/nodes/{id}/stop|start|restart are left out (they would stop the nodes
# under test). Stops the cluster on exit. Prints `schemathesis: N passed, M failed` (tests: one per
# operation and per followed link) last, and exits non-zero when a test failed, the run timed out
# or the setup failed.
set -euo pipefail

MAX_EXAMPLES=${MAX_EXAMPLES:-50}
TIME_LIMIT_S=${TIME_LIMIT_S:-180}
SEED=${SEED:-1} # a fixed seed keeps CI reproducible; SEED=random explores new inputs
READY_TIMEOUT_S=90
ADMIN_KEY=dev-admin-key-change-me

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/schemathesis
VENV=$ROOT/target/schemathesis-venv
RCLUSTER=$ROOT/target/debug/rcluster
MODULE=$ROOT/target/debug/librcluster_module.so

# The last line printed, also when the setup fails (then as one failure).
SUMMARY="schemathesis: 0 passed, 1 failed"

die() {
    echo "schemathesis/run.sh: $*" >&2
    exit 1
}

TMP=
UP_PID=
REDIS_PORTS=()

# Stops the cluster (rcluster up stops its nodes, each its own Redis), then checks nothing is left.
cleanup() {
    local status=$? i left port
    trap - EXIT INT TERM
    [[ -n ${TMP:-} ]] || { echo "$SUMMARY"; exit "$status"; }
    if [[ -n $UP_PID ]]; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        for ((i = 0; i < 600; i++)); do
            kill -0 "$UP_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$UP_PID" 2>/dev/null; then
            echo "schemathesis/run.sh: rcluster up (pid $UP_PID) did not stop within 60 s; killing it" >&2
            kill -KILL "$UP_PID" 2>/dev/null || true
            status=1
        fi
        wait "$UP_PID" 2>/dev/null || true
    fi
    sleep 0.2
    left=$(pgrep -f "$TMP" || true)
    for port in "${REDIS_PORTS[@]}"; do
        left+=" $(pgrep -f "^redis-server [^ ]*:$port( |$)" || true)"
    done
    left=$(echo $left)
    if [[ -n $left ]]; then
        echo "schemathesis/run.sh: processes of this run are still running after cleanup:" >&2
        ps -o pid,args -p "${left// /,}" >&2 || true
        for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
        status=1
    fi
    rm -rf "$TMP"
    echo "$SUMMARY"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in cargo python3 redis-server pgrep curl timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ $MAX_EXAMPLES =~ ^[1-9][0-9]*$ ]] || die "MAX_EXAMPLES must be a positive integer, got '$MAX_EXAMPLES'"
[[ $TIME_LIMIT_S =~ ^[1-9][0-9]*$ ]] || die "TIME_LIMIT_S must be a positive integer, got '$TIME_LIMIT_S'"
[[ $SEED == random || $SEED =~ ^[0-9]+$ ]] || die "SEED must be a number or 'random', got '$SEED'"

# The venv is kept between runs (target/ is gitignored); it is rebuilt when requirements.txt changes.
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/schemathesis || $(cat "$STAMP" 2>/dev/null) != "$want" ]]; then
    echo "creating $VENV (schemathesis from requirements.txt)..." >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" ||
        die "pip install -r tests/schemathesis/requirements.txt failed"
    echo "$want" >"$STAMP"
fi

echo "building the workspace (debug)..." >&2
(cd "$ROOT" && cargo build -q --workspace) || die "cargo build --workspace failed"
[[ -x $RCLUSTER ]] || die "$RCLUSTER is missing after the build"
[[ -f $MODULE ]] || die "$MODULE is missing after the build"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rcluster-schemathesis.XXXXXX")

# True when something listens on (or answers at) the port.
port_busy() {
    if command -v ss >/dev/null; then
        ss -Htln "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Nine free ports in 20000-32000 (below the ephemeral range): redis, http, peer for each node.
PORTS=()
start=$((20000 + RANDOM % 12000))
for ((i = 0; i < 12000 && ${#PORTS[@]} < 9; i++)); do
    candidate=$((20000 + (start - 20000 + i) % 12000))
    port_busy "$candidate" || PORTS+=("$candidate")
done
((${#PORTS[@]} == 9)) || die "no 9 free ports found in 20000-32000"
REDIS_PORTS=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
HTTP_PORT=${PORTS[3]}

CONFIG=$TMP/cluster.yaml
cat >"$CONFIG" <<YAML
cluster_name: schemathesis
data_dir: $TMP/data
redis_conf: $ROOT/redis.conf
files: { max_file_bytes: 10485760 }
api: { rate_per_s: 10000, burst: 10000 }
nodes:
  - { id: n1, redis_port: ${PORTS[0]}, http_port: ${PORTS[3]}, peer_port: ${PORTS[6]} }
  - { id: n2, redis_port: ${PORTS[1]}, http_port: ${PORTS[4]}, peer_port: ${PORTS[7]} }
  - { id: n3, redis_port: ${PORTS[2]}, http_port: ${PORTS[5]}, peer_port: ${PORTS[8]} }
YAML

"$RCLUSTER" up --config "$CONFIG" >"$TMP/up.out" 2>&1 &
UP_PID=$!
for ((i = 0; i < READY_TIMEOUT_S * 10; i++)); do
    grep -q 'cluster ready' "$TMP/up.out" && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$TMP/up.out" >&2; die "rcluster up exited during start-up"; }
    sleep 0.1
done
grep -q 'cluster ready' "$TMP/up.out" || { cat "$TMP/up.out" >&2; die "the cluster was not ready within ${READY_TIMEOUT_S} s"; }

BASE=http://127.0.0.1:$HTTP_PORT
curl -fsS -o "$TMP/openapi.json" "$BASE/api/openapi.json" || die "GET $BASE/api/openapi.json failed"

seed_args=()
[[ $SEED == random ]] || seed_args=(--hypothesis-seed "$SEED")
echo "schemathesis $("$VENV/bin/schemathesis" --version | awk '{ print $NF }') against $BASE" \
    "(at most $MAX_EXAMPLES examples per operation, ${TIME_LIMIT_S} s, seed $SEED)" >&2
set +e
(
    cd "$TMP" # schemathesis and hypothesis write nothing into the work tree
    SCHEMATHESIS_HOSTS_PATH=$TMP/hosts.toml timeout --signal=INT --kill-after=15 "$TIME_LIMIT_S" \
        "$VENV/bin/schemathesis" run "$BASE/api/openapi.json" \
        --base-url "$BASE" \
        -H "Authorization: Bearer $ADMIN_KEY" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance \
        --exclude-operation-id-regex '^node(Stop|Start|Restart)$' \
        --validate-schema true \
        --generation-with-security-parameters false \
        --stateful links \
        --hypothesis-max-examples "$MAX_EXAMPLES" \
        --hypothesis-deadline 30000 \
        --hypothesis-database none \
        --hypothesis-suppress-health-check all \
        "${seed_args[@]}" \
        --request-timeout 30000 \
        --junit-xml "$TMP/junit.xml" \
        --code-sample-style curl \
        --no-color 2>&1 | tee "$TMP/schemathesis.out"
    exit "${PIPESTATUS[0]}"
)
rc=$?
set -e

# Tests passed and failed (one per operation, one per followed link), from schemathesis's own
# summary line ("=== 18 passed, 1 failed in 9.04s ==="; errored counts as failed), else from the
# JUnit report (operations only).
summary_line=$(grep -E '^=+ .*[0-9]+ (passed|failed|errored).* in [0-9.]+s =+$' "$TMP/schemathesis.out" | tail -1 || true)
if [[ -n $summary_line ]]; then
    count() { grep -oE "[0-9]+ $1" <<<"$summary_line" | cut -d' ' -f1 || true; }
    passed=$(count passed) failed=$(count failed) errored=$(count errored)
    passed=${passed:-0} failed=$((${failed:-0} + ${errored:-0}))
else
    read -r passed failed < <("$VENV/bin/python" - "$TMP/junit.xml" <<'PY' 2>/dev/null || echo "0 0"
import sys
import xml.etree.ElementTree as ET
passed = failed = 0
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is None:
        passed += 1
print(passed, failed)
PY
    )
fi
if ((rc == 124 || rc == 137)); then
    echo "schemathesis/run.sh: schemathesis ran over ${TIME_LIMIT_S} s and was stopped" >&2
    failed=$((failed + 1))
elif ((rc != 0 && failed == 0)); then
    echo "schemathesis/run.sh: schemathesis exited with status $rc" >&2
    failed=$((failed + 1))
fi
SUMMARY="schemathesis: $passed passed, $failed failed"
((rc == 0 && failed == 0))
