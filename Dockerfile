# syntax=docker/dockerfile:1
# Herald's one image: every role is a subcommand of the same binary (`herald ingest`, `herald
# sender`, `herald webhook`, `herald all`, `herald migrate`).
#   docker build -t herald:dev .
# The Cargo registry and target directory live in BuildKit cache mounts, so a rebuild after a
# source change recompiles Herald's crates, not its dependencies.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY shared shared
COPY services services
COPY tests tests
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald \
    && cp target/release/herald /herald

# distroless/cc: glibc, libgcc and CA certificates (the Cloud API and managed Redis/Postgres
# are reached over TLS), no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /herald /usr/local/bin/herald
COPY config /etc/herald/config
ENV HERALD_ENV=production \
    HERALD_CONFIG_DIR=/etc/herald/config
USER 65532:65532
# ingest API, webhook receiver, sender metrics and probes
EXPOSE 8080 8081 9091
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["all"]
