#!/usr/bin/env bash
# What the tests, the chaos suite and the cluster suite need, installed once and
# cached outside the clone: sourced by .ci/run and e2e/run-cluster.sh. Exports
# CARGO_TARGET_DIR, WEIR_S3S_FS, ROCKSDB_LIB_DIR/ROCKSDB_STATIC, HELM_VENV and
# WEIR_KAFKA_LIBS.

# Long builds live outside the clone so that later runs on this machine reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
mkdir -p "$CARGO_TARGET_DIR"
# A long-lived cache grows without bound: incremental state (useless to CI) and
# the test binaries of earlier commits. Neither is written from here on, and
# stale binaries older than a day go (each run relinks its own).
export CARGO_INCREMENTAL=0
rm -rf "$CARGO_TARGET_DIR"/debug/incremental "$CARGO_TARGET_DIR"/release/incremental
find "$CARGO_TARGET_DIR"/debug/deps "$CARGO_TARGET_DIR"/release/deps -maxdepth 1 -type f \
  \( -name 'it-*' -o -name 'weir-*' -o -name 'weir_runtime-*' -o -name 'weir_controller-*' \) \
  -mtime +1 -delete 2>/dev/null || true

# The Rust toolchain, a C compiler (for -sys crates) and protoc (for the wire contract).
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
missing=()
command -v cc >/dev/null || missing+=(gcc)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
# librdkafka (the Kafka client) is compiled from source by rdkafka-sys.
command -v make >/dev/null || missing+=(make)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# librdkafka's TLS and SCRAM use the system's OpenSSL (found with pkg-config);
# the secured test broker's certificates are made with the openssl tool.
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v openssl >/dev/null || missing+=(openssl)
# The chart's Argo CD health check is tested by running it in Lua.
command -v lua5.4 >/dev/null || missing+=(lua5.4)
# librocksdb-sys generates its bindings with libclang.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# s3s-fs, the S3-compatible server the tests start on 127.0.0.1 (built once, cached).
S3S_FS="$HOME/.cache/weir/bin/s3s-fs"
if [ ! -x "$S3S_FS" ]; then
  cargo install s3s-fs@0.14.1 --locked --features binary --root "$HOME/.cache/weir"
fi
export WEIR_S3S_FS="$S3S_FS"

# RocksDB's C++ library (15-20 min on two cores) is built once and cached; every
# profile (the tests here, a developer's check and release builds) links that
# archive instead of compiling RocksDB again.
rocksdb_version=$(grep -A1 '^name = "librocksdb-sys"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
ROCKSDB_LIB="$HOME/.cache/weir/rocksdb-$rocksdb_version"
if [ ! -f "$ROCKSDB_LIB/librocksdb.a" ]; then
  # Without debug info: the archive is stripped of it below anyway, and g++
  # writing it (-g1) took 12 % longer (24.0 s against 21.4 s for one file).
  (unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
   CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release -p librocksdb-sys)
  built=$(ls -t "$CARGO_TARGET_DIR"/release/build/librocksdb-sys-*/out/librocksdb.a | head -1)
  mkdir -p "$ROCKSDB_LIB"
  cp "$built" "$ROCKSDB_LIB/librocksdb.a.tmp"
  strip --strip-debug "$ROCKSDB_LIB/librocksdb.a.tmp"
  mv "$ROCKSDB_LIB/librocksdb.a.tmp" "$ROCKSDB_LIB/librocksdb.a"
fi
export ROCKSDB_LIB_DIR="$ROCKSDB_LIB" ROCKSDB_STATIC=1

# Helm's own library (helm-sdkpy) lints the chart and installs it in the cluster suite.
export HELM_VENV="$HOME/.cache/weir/helm-venv"
if [ ! -x "$HELM_VENV/bin/python" ] || ! "$HELM_VENV/bin/python" -c "import helm_sdkpy" 2>/dev/null; then
  python3 -m venv "$HELM_VENV"
  "$HELM_VENV/bin/pip" install -q --ignore-requires-python helm-sdkpy
fi

# Apache Kafka, the broker the Kafka tests start on 127.0.0.1: its jars from Maven
# Central (e2e/kafka/pom.xml), copied once into a cache; Java 17 runs it.
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' e2e/kafka/pom.xml)
export WEIR_KAFKA_LIBS="$HOME/.cache/weir/kafka-$kafka_version/libs"
# The newest jar the pom added says whether the cache is complete.
if [ ! -f "$WEIR_KAFKA_LIBS/kafka-tools-$kafka_version.jar" ]; then
  rm -rf "$WEIR_KAFKA_LIBS.tmp"
  mvn -q -f e2e/kafka/pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$WEIR_KAFKA_LIBS.tmp"
  rm -rf "$WEIR_KAFKA_LIBS"
  mv "$WEIR_KAFKA_LIBS.tmp" "$WEIR_KAFKA_LIBS"
fi
