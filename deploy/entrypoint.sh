#!/bin/sh
# Starts one node in a container (or a pod, or a network namespace laid out by deploy/layout.sh):
# `rcluster node` with this node's id, binding every address, with the config next to it.
#
# Environment:
#   RCLUSTER_NODE_ID          this node's id (required); in Kubernetes the pod's name
#   RCLUSTER_ADMIN_KEY, RCLUSTER_READ_KEY, RCLUSTER_REDIS_PASSWORD
#                             secrets the config refers to as ${...} (required by the shipped config)
#   RCLUSTER_CONFIG           config file (default: <root>/etc/rcluster/cluster.yaml)
#   RCLUSTER_LISTEN_HOST      address to bind (default 0.0.0.0)
#   RCLUSTER_NODE_ARGS        more arguments for `rcluster node`, e.g. --low-resource
#   RCLUSTER_JOIN_HOST_SUFFIX for a node that is not in the config (a StatefulSet scaled up): it
#                             starts as a new node reached at <id><suffix> on the usual ports, to
#                             be admitted with `rcluster node add` (docs/deployment.md)
# The cluster secret is read from <root>/run/secrets/cluster_secret (see the config's peers).
# A secret still reading REPLACE_ME (deploy/k8s/secret.yaml's placeholders) stops the node.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
: "${RCLUSTER_NODE_ID:?set RCLUSTER_NODE_ID to this node's id (one of the nodes in the config)}"
config=${RCLUSTER_CONFIG:-$root/etc/rcluster/cluster.yaml}
secret=$root/run/secrets/cluster_secret
if [ ! -s "$secret" ]; then
  echo "error: the cluster secret $secret is missing or empty: mount the same secret (32 to 1024 printable characters) into every node" >&2
  exit 2
fi
for name in RCLUSTER_ADMIN_KEY RCLUSTER_READ_KEY RCLUSTER_REDIS_PASSWORD; do
  eval "value=\${$name:-}"
  case "$value" in REPLACE_ME*)
    echo "error: $name is still the placeholder '$value': set your own secret" >&2; exit 2 ;;
  esac
done
if grep -q '^REPLACE_ME' "$secret"; then
  echo "error: the cluster secret $secret is still the placeholder: set your own secret" >&2
  exit 2
fi
join=""
if [ -n "${RCLUSTER_JOIN_HOST_SUFFIX:-}" ] \
  && ! grep -Eq "id: *\"?$RCLUSTER_NODE_ID\"?[ ,}]" "$config"; then
  join="--host $RCLUSTER_NODE_ID$RCLUSTER_JOIN_HOST_SUFFIX --redis-port 6379 --http-port 8080 --peer-port 7379"
fi
# shellcheck disable=SC2086 # RCLUSTER_NODE_ARGS and join hold several arguments
exec "$here/rcluster" node --config "$config" --id "$RCLUSTER_NODE_ID" \
  --listen-host "${RCLUSTER_LISTEN_HOST:-0.0.0.0}" $join ${RCLUSTER_NODE_ARGS:-}
