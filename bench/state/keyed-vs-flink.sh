#!/usr/bin/env bash
# Keyed state beyond the cache, weir against Apache Flink 2.3.0 on this machine, in one run:
# keyed-sum (a running sum per key, every record emitting its key's sum) with RocksDB state,
# weir's `weir bench keyed-sum` and Flink's weir.bench.KeyedSum (bench/nexmark/flink, a local
# MiniCluster in one JVM) taking turns, --runs times each; prints every RESULT line and a
# table of the medians of records per CPU-second (compactions and checkpoints included).
#
#   bench/state/keyed-vs-flink.sh [--keys 20000000] [--records 30000000] [--runs 3]
#       [--cache-mb 64] [--rocksdb-mb 64] [--flink-managed-memory 128m]
#       [--checkpoint-interval 5s] [--state-dir DIR] [--flink-only] [--weir-only]
#
# weir keeps --cache-mb of decoded keys and values in front of RocksDB and gives RocksDB
# --rocksdb-mb (block cache and memtables); Flink gets --flink-managed-memory for RocksDB
# (block cache and write buffers): by default 128 MiB of state memory each.
# Environment: WEIR (the weir binary, default `weir` on PATH), FLINK_JAVA_OPTS (default
# "-Xmx2g"), JAVA (default `java`), MVN (default `mvn`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../nexmark" && pwd)"
keys=20000000
records=30000000
runs=3
cache_mb=64
rocksdb_mb=64
managed=128m
interval=5s
state_dir="${TMPDIR:-/tmp}"
flink=1
weir=1

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) keys="${2//[_,]/}"; shift 2 ;;
        --records) records="${2//[_,]/}"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --cache-mb) cache_mb="$2"; shift 2 ;;
        --rocksdb-mb) rocksdb_mb="$2"; shift 2 ;;
        --flink-managed-memory) managed="$2"; shift 2 ;;
        --checkpoint-interval) interval="$2"; shift 2 ;;
        --state-dir) state_dir="$2"; shift 2 ;;
        --flink-only) weir=0; shift ;;
        --weir-only) flink=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
WEIR="${WEIR:-weir}"
read -r -a java_opts <<< "${FLINK_JAVA_OPTS:--Xmx2g}"

# flink_classpath, field and median.
source "$here/lib.sh"

if [ "$flink" = 1 ]; then
    command -v "$JAVA" >/dev/null || { echo "no java (17+) on PATH" >&2; exit 1; }
    classpath="$(flink_classpath)"
fi
if [ "$weir" = 1 ] && ! command -v "$WEIR" >/dev/null; then
    echo "weir binary '$WEIR' not found: set WEIR=/path/to/weir, or use --flink-only" >&2
    exit 1
fi

weir_rpc=()
flink_rpc=()
for run in $(seq "$runs"); do
    if [ "$flink" = 1 ]; then
        out="$(TMPDIR="$state_dir" "$JAVA" "${java_opts[@]}" -Djava.io.tmpdir="$state_dir" \
            -cp "$classpath" weir.bench.KeyedSum --records "$records" --keys "$keys" \
            --checkpoint-interval "$interval" --state-backend rocksdb \
            --managed-memory "$managed")" || { echo "flink run $run failed" >&2; out=""; }
        line="$(grep '^RESULT ' <<< "$out" || true)"
        grep '^INFO ' <<< "$out" >&2 || true
        if [ -n "$line" ]; then
            echo "$line"
            flink_rpc+=("$(field "$line" rps_per_core)")
        fi
    fi
    if [ "$weir" = 1 ]; then
        dir="$(mktemp -d "$state_dir/weir-keyed-XXXXXX")"
        out="$("$WEIR" bench keyed-sum --records "$records" --keys "$keys" \
            --checkpoint-interval "$interval" --state-backend rocksdb \
            --state-cache-mb "$cache_mb" --state-rocksdb-mb "$rocksdb_mb" \
            --state-dir "$dir")" \
            || { echo "weir run $run failed" >&2; out=""; }
        rm -rf "$dir"
        line="$(grep '^RESULT ' <<< "$out" || true)"
        if [ -n "$line" ]; then
            echo "$line"
            weir_rpc+=("$(field "$line" rps_per_core)")
        fi
    fi
done

echo
echo "keyed-sum, $records records over $keys keys, RocksDB, checkpoints every $interval;" \
    "weir cache ${cache_mb} MiB and RocksDB ${rocksdb_mb} MiB, Flink managed memory $managed;" \
    "medians of $runs"
w="-"; f="-"; ratio="-"
[ "${#weir_rpc[@]}" -gt 0 ] && w="$(median "${weir_rpc[@]}")"
[ "${#flink_rpc[@]}" -gt 0 ] && f="$(median "${flink_rpc[@]}")"
if [ "$w" != - ] && [ "$f" != - ] && [ "$f" != 0 ]; then
    ratio="$(awk -v w="$w" -v f="$f" 'BEGIN { printf "%.2f", w / f }')"
fi
printf '%18s %18s %11s\n' weir_rps_per_core flink_rps_per_core weir/flink
printf '%18s %18s %11s\n' "$w" "$f" "$ratio"
