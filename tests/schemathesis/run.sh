#!/usr/bin/env bash
# API conformance test: fuzzes a local 3-node cluster's HTTP API with schemathesis against the
# OpenAPI 3.1 document the nodes serve (GET /api/openapi.json, generated from the handlers and the
# API types in sidecar/src/http and sidecar/src/api; schemathesis 3.x reads 3.1 behind its
# `--experimental=openapi-3.1` switch).
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
# get/delete). POST /api/nodes/{id}/stop|start|restart, DELETE /api/nodes/{id}, POST /api/faults
# and PUT /api/faults/{id} are left out (they would stop, remove or cut off the nodes under test),
# and POST /api/checks (a check injects faults into the cluster under test for up to an hour;
# tests/tests/check.rs covers it) and POST /api/demos (a scenario kills, fills and adds nodes on
# purpose; tests/tests/demo.rs covers it). Stops the cluster on exit. Prints
# `schemathesis: N passed, M failed` (tests: one per operation and per followed link) last, and
# exits non-zero when a test failed, the run timed out
# or the setup failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/bench/lib.sh"
SCRIPT=schemathesis/run.sh # message prefix

MAX_EXAMPLES=${MAX_EXAMPLES:-50}
TIME_LIMIT_S=${TIME_LIMIT_S:-180}
SEED=${SEED:-1} # a fixed seed keeps CI reproducible; SEED=random explores new inputs
READY_TIMEOUT_S=90

HERE=$ROOT/tests/schemathesis
VENV=$ROOT/target/schemathesis-venv
RCLUSTER=$ROOT/target/debug/rcluster
MODULE=$ROOT/target/debug/librcluster_module.so

# The last line printed, also when the setup fails (then as one failure).
SUMMARY="schemathesis: 0 passed, 1 failed"
print_summary() { echo "$SUMMARY"; }

# Cleanup stops the cluster (rcluster up stops its nodes, each its own Redis), checks nothing is
# left (no line when nothing is), then prints the summary.
CLEANUP_OK=
LEFTOVER_WARNING="processes of this run are still running after cleanup"
AT_EXIT=print_summary
install_cleanup

require_tools cargo python3 redis-server pgrep curl timeout
require_positive_int MAX_EXAMPLES
require_positive_int TIME_LIMIT_S
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

cargo_build "the workspace (debug)" --workspace
require_built

make_tmp schemathesis
pick_ports
HTTP_PORT=${PORTS[3]}

CONFIG=$TMP/cluster.yaml
write_cluster_yaml "$CONFIG" schemathesis "$TMP/data" "files: { max_file_bytes: 10485760 }
api: { rate_per_s: 10000, burst: 10000, auth_failure_burst: 10000 }"

start_rcluster_up "$TMP/up.out" --config "$CONFIG"
wait_cluster_ready "$TMP/up.out"

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
        --experimental=openapi-3.1 \
        -H "Authorization: Bearer $ADMIN_KEY" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance \
        --exclude-operation-id-regex '^(node(Stop|Start|Restart|Remove)|fault(Inject|Hold)|startCheck|startDemo)$' \
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
