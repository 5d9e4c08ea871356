#!/usr/bin/env bash
# Installs a built node into a root folder the way the container image holds it (the Dockerfile
# and the namespace test both use this, so they run the same layout):
#   <root>/usr/local/bin/rcluster, librcluster_module.so, rcluster-entrypoint
#   <root>/etc/rcluster/cluster.yaml (config/docker/cluster.yaml) and redis.conf
#   <root>/usr/local/share/rcluster/admin-ui/ (the built admin page, when admin-ui/dist exists)
#   <root>/data and <root>/run/secrets (mount points: the node's data, the cluster secret)
# Usage: deploy/layout.sh <root> [<folder with rcluster and librcluster_module.so>]
#        (default folder: target/release)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${1:?usage: deploy/layout.sh <root> [<bin folder>]}
bin=${2:-$repo/target/release}
for f in rcluster librcluster_module.so; do
  [ -f "$bin/$f" ] || { echo "error: $bin/$f is missing: build first (./rc.sh build --release)" >&2; exit 1; }
done
install -d "$root/usr/local/bin" "$root/etc/rcluster" "$root/data" "$root/run/secrets"
install -m 0755 "$bin/rcluster" "$root/usr/local/bin/rcluster"
install -m 0755 "$bin/librcluster_module.so" "$root/usr/local/bin/librcluster_module.so"
install -m 0755 "$repo/deploy/entrypoint.sh" "$root/usr/local/bin/rcluster-entrypoint"
install -m 0644 "$repo/config/docker/cluster.yaml" "$root/etc/rcluster/cluster.yaml"
install -m 0644 "$repo/redis.conf" "$root/etc/rcluster/redis.conf"
if [ -d "$repo/admin-ui/dist" ]; then
  install -d "$root/usr/local/share/rcluster"
  cp -r "$repo/admin-ui/dist" "$root/usr/local/share/rcluster/admin-ui"
fi
