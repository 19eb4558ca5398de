# Switchyard: build with the Rust toolchain, run on a slim Debian.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/switchyard

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/switchyard --create-home switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY config /etc/switchyard
USER switchyard
WORKDIR /var/lib/switchyard
EXPOSE 8000 8001
ENTRYPOINT ["switchyard"]
CMD ["run", "-c", "/etc/switchyard/docker-compose.toml", "--state-dir", "/var/lib/switchyard"]
