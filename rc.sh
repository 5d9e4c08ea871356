#!/usr/bin/env bash
# Developer entry point: installs what is missing (Debian/Ubuntu packages), then starts the local
# cluster (`./rc.sh up`), runs every test (`./rc.sh test`), the lint checks or the benchmarks.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'TXT'
usage: ./rc.sh <command> [args]
  up [--low-resource] ...   build (release) and the admin page, start the local 3-node cluster of config/cluster.yaml
  build [--release]         install the build's packages, build the workspace and the admin page (the Dockerfile runs this)
  compose-secrets           write .env and deploy/secrets/cluster.secret for docker-compose.yml
  test                      build and run the whole test suite (cargo tests, schemathesis, then the browser tests)
  check                     cargo fmt --check and cargo clippy -D warnings
  bench                     run the benchmarks (prints ours vs plain Redis and the ratio)
  deps                      only install the system packages the project needs
TXT
}

# True when the Debian package is installed (its dpkg status), whatever files other packages ship:
# libclang-cpp14's libclang-cpp.so.14 looks like libclang to a file glob, but bindgen needs
# libclang-dev's libclang.so.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Installs the Debian packages the build, the cluster and the tests need, when any is missing:
# decided by package status where dpkg exists, by the commands themselves elsewhere.
ensure_deps() {
  local missing=()
  if command -v dpkg-query >/dev/null 2>&1; then
    local p
    # libclang-dev: bindgen (redis-module's build); redis-server, redis-tools: the nodes and the
    # benchmarks; curl, procps (pgrep), python3-venv (schemathesis, kubernetes-validate),
    # prometheus (promtool), iproute2 and nftables (nodes in network namespaces, real
    # partitions), docker-compose (checks docker-compose.yml offline), chromium (the browser
    # tests): the tests.
    for p in libclang-dev redis-server redis-tools gcc curl procps python3-venv prometheus \
      iproute2 nftables docker-compose chromium; do
      installed "$p" || missing+=("$p")
    done
    # The admin page's build (admin-ui/) and its browser tests: Node.js and npm (by command:
    # a Node.js from another source may bring npm inside its own package), and Debian's
    # chromium (above).
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
  else
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
    command -v cc >/dev/null 2>&1 || missing+=(gcc)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  fi
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
  check_redis_version
}

# The module uses Redis 7.0's module API (event loop, blocked clients with timeouts).
check_redis_version() {
  local v
  v=$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')
  if [ -z "$v" ]; then
    echo "error: redis-server is not installed or does not run (redis-server --version printed nothing)" >&2
    exit 1
  fi
  if [ "${v%%.*}" -lt 7 ]; then
    echo "error: redis-server $v is too old: the rcluster module needs Redis 7.0 or later (Debian 12 ships 7.0.15)" >&2
    exit 1
  fi
}

# Installs the admin page's packages (npm ci: exactly package-lock.json) when they changed,
# and builds it into admin-ui/dist/, which every node serves at /.
build_ui() {
  local stamp=admin-ui/node_modules/.rc-lock
  if [ ! -f "$stamp" ] || ! cmp -s admin-ui/package-lock.json "$stamp"; then
    (cd admin-ui && npm ci --no-audit --no-fund) || { echo "error: npm ci in admin-ui/ failed" >&2; exit 1; }
    cp admin-ui/package-lock.json "$stamp"
  fi
  (cd admin-ui && npm run build --silent) || { echo "error: building the admin page (admin-ui/) failed" >&2; exit 1; }
}

install_packages() {
  local missing=("$@")
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
      echo "error: missing packages: ${missing[*]}" >&2
      echo "install them as root:  apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing ${missing[*]} and this is not a Debian/Ubuntu system (no apt-get); install them with your package manager" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq || { echo "error: apt-get update failed; check your network or package sources" >&2; exit 1; }
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "error: apt-get install ${missing[*]} failed" >&2; exit 1; }
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    # We only need the binary: the package's own service would hold port 6379.
    "${sudo[@]}" systemctl disable --now redis-server >/dev/null 2>&1 \
      || "${sudo[@]}" service redis-server stop >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    # We only need promtool: the package's own server would hold port 9090.
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 \
      || "${sudo[@]}" service prometheus stop >/dev/null 2>&1 || true
  fi
}

# Only what building needs (the Dockerfile's build stage has no Redis and needs none): bindgen's
# libclang, a C compiler, and Node.js with npm for the admin page.
ensure_build_deps() {
  local missing=() p
  if command -v dpkg-query >/dev/null 2>&1; then
    for p in libclang-dev gcc; do installed "$p" || missing+=("$p"); done
  else
    command -v cc >/dev/null 2>&1 || missing+=(gcc)
  fi
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# Random secrets for docker-compose.yml: .env (keys, Redis password) and the cluster secret file.
# Never overwrites existing ones.
compose_secrets() {
  key() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  if [ -e .env ]; then echo ".env exists: kept"; else
    umask 077
    printf 'RCLUSTER_ADMIN_KEY=%s\nRCLUSTER_READ_KEY=%s\nRCLUSTER_REDIS_PASSWORD=%s\n' \
      "$(key)" "$(key)" "$(key)" > .env
    echo "wrote .env (the admin key is RCLUSTER_ADMIN_KEY in it)"
  fi
  mkdir -p deploy/secrets
  if [ -e deploy/secrets/cluster.secret ]; then echo "deploy/secrets/cluster.secret exists: kept"; else
    (umask 077; printf '%s%s' "$(key)" "$(key)" > deploy/secrets/cluster.secret)
    echo "wrote deploy/secrets/cluster.secret"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    ensure_deps
    cargo build --release --workspace
    build_ui
    exec target/release/rcluster up --config config/cluster.yaml "$@"
    ;;
  build)
    ensure_build_deps
    cargo build --workspace "$@"
    build_ui
    ;;
  compose-secrets) compose_secrets ;;
  test)
    ensure_deps
    cargo build --workspace
    cargo test --workspace "$@"
    # The API against its OpenAPI document (schemathesis from PyPI, in target/).
    bash tests/schemathesis/run.sh
    # The admin page in Debian's chromium against a real cluster (Playwright, admin-ui/tests/).
    build_ui
    (cd admin-ui && RCLUSTER_TARGET="$PWD/../target/debug" npm test)
    ;;
  check)
    cargo fmt --all -- --check
    ensure_deps
    cargo clippy --workspace --all-targets -- -D warnings
    ;;
  bench)
    ensure_deps
    for b in module_put quorum failure_detection footprint files trace; do
      [ -f "bench/$b.sh" ] && bash "bench/$b.sh"
    done
    ;;
  deps) ensure_deps ;;
  -h|--help|help|"") usage ;;
  *) echo "error: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
