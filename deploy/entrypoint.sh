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
# The cluster secret is read from <root>/run/secrets/cluster_secret (see the config's peers).
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
# shellcheck disable=SC2086 # RCLUSTER_NODE_ARGS holds several arguments
exec "$here/rcluster" node --config "$config" --id "$RCLUSTER_NODE_ID" \
  --listen-host "${RCLUSTER_LISTEN_HOST:-0.0.0.0}" ${RCLUSTER_NODE_ARGS:-}
