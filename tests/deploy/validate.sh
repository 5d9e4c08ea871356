#!/usr/bin/env bash
# Validates the deployment files offline, with the real tools: docker-compose.yml (alone and with
# the low-resource override) through Debian's `docker-compose config`, which also refuses it when
# a required secret is unset; every bind-mounted source of the compose file exists; and the
# Kubernetes manifests in deploy/k8s/ through PyPI's kubernetes-validate (strict, in a venv in
# target/deploy-venv). Prints one line per check; exits non-zero on the first failure.
# (The containers' configuration is run for real by tests/tests/netns.rs and compared with the
# Kubernetes one by tests/tests/deploy.rs.)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
fail() { echo "deploy/validate: $*" >&2; exit 1; }
command -v docker-compose >/dev/null || fail "docker-compose is missing (./rc.sh test installs it)"

export RCLUSTER_ADMIN_KEY=validate-admin-key-0123456789 RCLUSTER_READ_KEY=validate-read-key-0123456789 \
  RCLUSTER_REDIS_PASSWORD=validate-redis-password
docker-compose -f docker-compose.yml config -q || fail "docker-compose.yml is invalid"
docker-compose -f docker-compose.yml -f docker-compose.low-resource.yml config -q \
  || fail "docker-compose.low-resource.yml is invalid"
low=$(docker-compose -f docker-compose.yml -f docker-compose.low-resource.yml config)
[ "$(grep -c 'RCLUSTER_NODE_ARGS: --low-resource' <<<"$low")" -eq 3 ] \
  || fail "the low-resource override does not start all three nodes with --low-resource"
echo "docker-compose config: docker-compose.yml and the low-resource override are valid"

if out=$(env -u RCLUSTER_ADMIN_KEY docker-compose -f docker-compose.yml config -q 2>&1); then
  fail "docker-compose.yml accepted an unset RCLUSTER_ADMIN_KEY"
fi
grep -q "rc.sh compose-secrets" <<<"$out" || fail "an unset secret is not explained: $out"
echo "docker-compose config: an unset secret is refused with: ${out##*: }"

# Every bind mount's source is in the repository (the secret is made by ./rc.sh compose-secrets).
while read -r src; do
  case "$src" in
    ./deploy/secrets/*) continue ;;
    ./*) [ -e "$src" ] || fail "docker-compose.yml mounts $src, which does not exist" ;;
  esac
done < <(grep -Eo '^\s+- \./[^:]+' docker-compose.yml | sed 's/^[[:space:]]*- //')
echo "docker-compose.yml: every bind-mounted file exists"

VENV=target/deploy-venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tests/deploy/requirements.txt
fi
"$VENV/bin/kubernetes-validate" --strict deploy/k8s/*.yaml || fail "deploy/k8s is invalid"
echo "kubernetes-validate: deploy/k8s/*.yaml are valid"
