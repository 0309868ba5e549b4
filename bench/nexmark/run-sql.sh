#!/usr/bin/env bash
# Nexmark in SQL, weir against Apache Flink 2.3.0 on this machine: for each query file and
# parallelism, runs the file with Flink's SQL planner (weir.bench.NexmarkSql, a local
# MiniCluster in one JVM) and with `weir bench sql`, collects their RESULT lines and prints a
# table of events per CPU-second (rps_per_core) side by side. See README.md.
#
#   bench/nexmark/run-sql.sh [--events N] [--queries "q0 q1 q2" | --queries "FILE ..."]
#                            [--parallelism "1 2"] [--checkpoint-interval 10s]
#                            [--state-backend hashmap|rocksdb] [--flink-only] [--weir-only]
#                            [--runs K] [--results FILE]
#
# Default: every examples/sql/nexmark/q*.sql (a query name qN is that directory's qN.sql).
# --runs K runs each side K times, Flink and weir taking turns, and the table shows each
# side's median (every RESULT line is printed and saved).
# Environment: WEIR (the weir binary, default `weir` on PATH), FLINK_JAVA_OPTS (JVM options
# of the Flink runs, default "-Xmx4g"), JAVA (default `java`), MVN (default `mvn`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
events=10000000
queries=""
parallelisms="1 2"
interval=10s
backend=hashmap
flink=1
weir=1
results=""
runs=1

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="${2//[_,]/}"; shift 2 ;;
        --queries) queries="$2"; shift 2 ;;
        --parallelism) parallelisms="$2"; shift 2 ;;
        --checkpoint-interval) interval="$2"; shift 2 ;;
        --state-backend) backend="$2"; shift 2 ;;
        --flink-only) weir=0; shift ;;
        --weir-only) flink=0; shift ;;
        --results) results="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$backend" in
    hashmap|heap) flink_backend=hashmap; weir_backend=heap ;;
    rocksdb) flink_backend=rocksdb; weir_backend=rocksdb ;;
    *) echo "--state-backend is hashmap (weir: heap) or rocksdb, not $backend" >&2; exit 2 ;;
esac

# The query files, and their names (the file name without .sql).
files=()
if [ -z "$queries" ]; then
    mapfile -t files < <(ls "$repo"/examples/sql/nexmark/q*.sql | sort -V)
else
    for q in $queries; do
        case "$q" in
            *.sql) files+=("$(cd "$(dirname "$q")" && pwd)/$(basename "$q")") ;;
            *) files+=("$repo/examples/sql/nexmark/$q.sql") ;;
        esac
    done
fi
names=()
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "no query file $f" >&2; exit 2; }
    names+=("$(basename "$f" .sql)")
done

JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
WEIR="${WEIR:-weir}"
read -r -a java_opts <<< "${FLINK_JAVA_OPTS:--Xmx4g}"
source "$here/lib.sh"

if [ "$flink" = 1 ]; then
    command -v "$JAVA" >/dev/null || { echo "no java (17+) on PATH" >&2; exit 1; }
    classpath="$(flink_classpath)"
fi
if [ "$weir" = 1 ] && ! command -v "$WEIR" >/dev/null; then
    echo "weir binary '$WEIR' not found: set WEIR=/path/to/weir, or use --flink-only" >&2
    exit 1
fi

lines=()
declare -A weir_rpc flink_rpc
for i in "${!files[@]}"; do
    file="${files[$i]}"
    q="${names[$i]}"
    for p in $parallelisms; do
        flink_runs=()
        weir_runs=()
        for _ in $(seq "$runs"); do
            if [ "$flink" = 1 ]; then
                out="$("$JAVA" "${java_opts[@]}" -cp "$classpath" weir.bench.NexmarkSql --sql "$file" \
                    --events "$events" --parallelism "$p" --checkpoint-interval "$interval" \
                    --state-backend "$flink_backend")" || { echo "flink $q p=$p failed" >&2; out=""; }
                line="$(grep '^RESULT ' <<< "$out" || true)"
                grep '^INFO ' <<< "$out" >&2 || true
                if [ -n "$line" ]; then
                    echo "$line"
                    lines+=("$line")
                    flink_runs+=("$(field "$line" rps_per_core)")
                fi
            fi
            if [ "$weir" = 1 ]; then
                wargs=(bench sql --query-file "$file" --events "$events" --parallelism "$p"
                    --checkpoint-interval "$interval")
                [ "$weir_backend" = heap ] || wargs+=(--state-backend "$weir_backend")
                out="$("$WEIR" "${wargs[@]}")" || { echo "weir $q p=$p failed" >&2; out=""; }
                line="$(grep '^RESULT ' <<< "$out" || true)"
                if [ -n "$line" ]; then
                    echo "$line"
                    lines+=("$line")
                    weir_runs+=("$(field "$line" rps_per_core)")
                fi
            fi
        done
        [ "${#flink_runs[@]}" = 0 ] || flink_rpc["$q/$p"]="$(median "${flink_runs[@]}")"
        [ "${#weir_runs[@]}" = 0 ] || weir_rpc["$q/$p"]="$(median "${weir_runs[@]}")"
    done
done

if [ -n "$results" ]; then
    printf '%s\n' "${lines[@]}" > "$results"
fi

echo
echo "Nexmark SQL, $events events, checkpoints every $interval, state: $backend, median of $runs run(s) a side"
printf '%-6s %11s %18s %18s %11s\n' query parallelism weir_rps_per_core flink_rps_per_core weir/flink
for q in "${names[@]}"; do
    for p in $parallelisms; do
        w="${weir_rpc["$q/$p"]:-}"
        f="${flink_rpc["$q/$p"]:-}"
        ratio="-"
        if [ -n "$w" ] && [ -n "$f" ] && [ "$f" != 0 ]; then
            ratio="$(awk -v w="$w" -v f="$f" 'BEGIN { printf "%.2f", w / f }')"
        fi
        printf '%-6s %11s %18s %18s %11s\n' "$q" "$p" "${w:--}" "${f:--}" "$ratio"
    done
done
