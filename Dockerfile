# The Herald image: one binary for every role (`herald router`, `herald deliver --channel X`)
# and the operator's tools (`herald topics apply`, `schemas register`, `db migrate`, ...).
# Used by docker-compose.yml and the Helm chart (helm/herald).
#
#   docker build -t herald .

# librdkafka (with its OpenSSL) is compiled in by rdkafka-sys: the builder needs a C toolchain,
# perl and make, all of which the rust image (buildpack-deps) has, plus cmake.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p herald \
    && cp target/release/herald /usr/local/bin/herald

FROM debian:bookworm-slim
# CA roots for TLS to Kafka, the registry and providers; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/herald /usr/local/bin/herald
# The demo data, for `herald seed /usr/share/herald/demo/seed.json` in docker-compose.
COPY dev/demo/seed.json dev/demo/requests.jsonl /usr/share/herald/demo/
# Non-root, as the Helm chart's securityContext expects (runAsNonRoot, uid 65532).
USER 65532:65532
# Each process's /healthz, /readyz and /metrics (set admin.listen to 0.0.0.0:9464 in a container).
EXPOSE 9464
ENTRYPOINT ["herald"]
CMD ["--help"]
