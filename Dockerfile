# The node image: `rcluster` (node process and CLI), the Redis module and Debian's redis-server.
# Built in two stages; the build stage runs the same scripts CI runs (./rc.sh build, then
# deploy/layout.sh, which the namespace test also uses), so a broken step fails CI first.
#   docker build -t rcluster:local .        (docker-compose.yml builds it for you)

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
# rc.sh build installs what the build needs from Debian (libclang-dev for bindgen, gcc) and, when
# admin-ui/ exists, Node.js and npm for the admin page.
RUN ./rc.sh build --release && deploy/layout.sh /out target/release

FROM debian:bookworm-slim
# redis-server 7.0 (the module needs 7.0 or later), curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
VOLUME /data
# Redis, HTTP API and admin page, peers (Raft over TCP, heartbeats over UDP).
EXPOSE 6379 8080 7379/tcp 7379/udp
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=5 \
  CMD curl -fsS http://127.0.0.1:8080/api/health || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rcluster-entrypoint"]
