# syntax=docker/dockerfile:1
# Recall image: a release build of the `recall` binary on a slim Debian.
#   docker build -t recall .
#   docker run -p 8080:8080 recall      # single instance, SQLite in /var/lib/recall
# For a fleet (PostgreSQL + Redis + nginx) see docker-compose.yml.

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole context (.dockerignore keeps target/, data and .git out), so
# optional folders such as benches/ are there when Cargo.toml names them.
COPY . .
# Cache mounts keep the crate registry and build artefacts between builds;
# the binary is copied out in the same step because the mount is not in the
# image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin recall \
 && install -D -m 0755 target/release/recall /out/recall

FROM debian:bookworm-slim
# ca-certificates: TLS to a managed PostgreSQL/Redis; curl: the healthcheck.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# Never run as root; the data dir (SQLite store, generated dev secrets) is the
# only place it writes. Mount a volume there to keep a single instance's data.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/recall --shell /usr/sbin/nologin recall \
 && install -d -o recall -g recall -m 0700 /var/lib/recall
COPY --from=builder /out/recall /usr/local/bin/recall
USER recall
WORKDIR /var/lib/recall
ENV RECALL_BIND=0.0.0.0:8080 \
    RECALL_DATA_DIR=/var/lib/recall
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null http://localhost:8080/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/recall"]
CMD ["serve"]
