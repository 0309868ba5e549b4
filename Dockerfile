# The weir runtime image: the `weir` binary (coordinator, worker, run, ...).
# Build from the repository root: docker build -t weir:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin weir && strip target/release/weir

# distroless/cc has glibc, libstdc++ (RocksDB) and OpenSSL's libssl3 (librdkafka's TLS
# and SCRAM), no shell; the user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/weir /usr/local/bin/weir
# A text the wordcount example reads.
COPY README.md /usr/share/weir/README.md
USER 65532:65532
ENTRYPOINT ["weir"]
