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
# ca-certificates installs the bundle /etc/ssl/certs/ca-certificates.crt and the hashed
# directory /etc/ssl/certs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Point OpenSSL at them. librdkafka's OpenSSL is compiled into the binary (rdkafka's
# `ssl-vendored`), and its default trust store is its build's OPENSSLDIR, /usr/local/ssl
# (cert.pem, certs/), which nothing here provides: without these variables TLS to a publicly
# signed broker fails "certificate verify failed" unless ssl.ca.location is set. With
# ssl.ca.location unset librdkafka calls SSL_CTX_set_default_verify_paths (its own probe of
# standard paths runs only when its configure saw a static libcrypto, which rdkafka-sys's
# build does not), and there OpenSSL takes SSL_CERT_FILE and SSL_CERT_DIR in place of its
# built-in paths. Checked against this build: unset, it looks for /usr/local/ssl/certs/<hash>.0;
# set, a broker signed by a CA in the named file verifies. rustls-native-certs (the HTTP
# clients' roots) reads the same two variables. An explicit ssl.ca.location still wins.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs
# At most two glibc malloc arenas. librdkafka's threads allocate fetch buffers and messages in
# arenas of their own, which keep freed memory: measured with `herald bench router`, the
# router's peak RSS was 267 MiB with the default (8 arenas per core) and 191 MiB with two,
# at the same CPU per event and throughput. Rust's own live heap was about 70 MiB in both.
ENV MALLOC_ARENA_MAX=2
COPY --from=build /usr/local/bin/herald /usr/local/bin/herald
# The demo data, for `herald seed /usr/share/herald/demo/seed.json` in docker-compose.
COPY dev/demo/seed.json dev/demo/requests.jsonl /usr/share/herald/demo/
# Non-root, as the Helm chart's securityContext expects (runAsNonRoot, uid 65532).
USER 65532:65532
# Each process's /healthz, /readyz and /metrics (set admin.listen to 0.0.0.0:9464 in a container).
EXPOSE 9464
ENTRYPOINT ["herald"]
CMD ["--help"]
