# syntax=docker/dockerfile:1.7
# The switchboard binary (every role: dev, edge, admin, operator, token, check-config, crd)
# on distroless: no shell, no package manager, uid 65532, nothing written to the root
# filesystem (runs with readOnlyRootFilesystem). Build: docker build -t switchboard .
ARG RUST_VERSION=1.94

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Manifests and sources of the whole workspace (cargo resolves every member), no target/.
COPY Cargo.toml Cargo.lock ./
COPY services ./services
COPY loadtest ./loadtest
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p switchboard \
    && install -D -m 0755 target/release/switchboard /out/switchboard

# Debian 12's glibc, the same as the bookworm build stage.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Multi-tenant Socket.IO v4 service: edge, admin API and Kubernetes operator in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/switchboard-dev/switchboard" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/switchboard /switchboard
# In a container the loopback defaults would be unreachable: listen on every interface.
ENV SWITCHBOARD_EDGE_ADDR=0.0.0.0:4000 \
    SWITCHBOARD_ADMIN_ADDR=0.0.0.0:4001
USER 65532:65532
EXPOSE 4000 4001
ENTRYPOINT ["/switchboard"]
CMD ["edge"]
