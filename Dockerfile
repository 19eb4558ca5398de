# Switchyard: build with the Rust toolchain, run on a slim Debian as a
# non-root user, with a health check on the admin server's /healthz.
#
#   docker build -t switchyard .        (or `docker compose up --build`)
#
# scripts/compose-smoke.sh copies the runtime stage's USER, WORKDIR, EXPOSE,
# HEALTHCHECK, ENTRYPOINT and CMD lines onto the image it builds without
# pulling: keep each of them on one line.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY scripts/build-release.sh ./scripts/
# Profile-guided: an instrumented build serves examples/pgo_workload.rs first.
RUN scripts/build-release.sh && strip target/release/switchyard

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY config /etc/switchyard
USER 10001:10001
WORKDIR /var/lib/switchyard
EXPOSE 8000 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["switchyard", "healthcheck", "--url", "http://127.0.0.1:8001/healthz"]
ENTRYPOINT ["switchyard"]
CMD ["run", "-c", "/etc/switchyard/docker-compose.toml", "--state-dir", "/var/lib/switchyard"]
