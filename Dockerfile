# syntax=docker/dockerfile:1.7
# One image per function:  docker build --build-arg BIN=sleep-diary -t sleep-diary .
#
# The builder stages do not depend on BIN, so BuildKit builds the workspace once (in one
# cargo invocation, as the build-cost notes ask) and every function's image reuses that
# layer; only the last two stages differ per BIN. Dependencies are compiled in their own
# layer (cargo-chef) that survives source changes. Bookworm matches the runtime's glibc.

FROM rust:1.95-slim-bookworm AS chef
# As in .cargo/config.toml (not in the build context): no CPU-jitter entropy in AWS-LC, which
# costs every new process 35-50 ms at its first TLS handshake; getrandom(2) stays the source.
ENV AWS_LC_SYS_NO_JITTER_ENTROPY=1
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
# sqlx checks queries against the committed .sqlx data, not a live database.
ENV SQLX_OFFLINE=true
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --workspace --bins \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -perm -u+x -exec cp {} /out/ \;

FROM builder AS pick
ARG BIN
RUN test -n "${BIN}" && test -x "/out/${BIN}" \
    || { echo "BIN must name a function binary; built: $(ls /out)" >&2; exit 1; } \
    && cp "/out/${BIN}" /function

# distroless: glibc and CA certificates, no shell, no package manager; uid 65532.
#checkov:skip=CKV_DOCKER_2:Cloud Run ignores HEALTHCHECK and probes the port itself (startup probe in terraform/modules); distroless has no shell or curl to run one
FROM gcr.io/distroless/cc-debian12:nonroot
ARG BIN
LABEL org.opencontainers.image.title="${BIN}" \
      org.opencontainers.image.description="dta-wide function ${BIN}"
COPY --from=pick --chown=nonroot:nonroot /function /app/function
USER nonroot:nonroot
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/app/function"]
