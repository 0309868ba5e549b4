#!/usr/bin/env bash
# Nexmark in weir's SQL against the same queries written with the typed API: for each query
# both have, runs `weir bench nexmark --query qN` and `weir bench sql --query-file
# examples/sql/nexmark/qN.sql` on the same events, taking turns, and prints each side's
# median events per CPU-second (rps_per_core) and typed/SQL (how much slower SQL is; the
# issue's bound is 1.5). See README.md.
#
#   bench/nexmark/typed-vs-sql.sh [--events N] [--queries "q0 q1 ..."] [--runs K]
#                                 [--checkpoint-interval 10s]
#
# Default: q0 q1 q2 q3 q4 q5 q7 q8 q11 (the typed pipelines), 2000000 events, 3 runs a side,
# parallelism 1. Environment: WEIR (the weir binary, default `weir` on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
events=2000000
queries="q0 q1 q2 q3 q4 q5 q7 q8 q11"
runs=3
interval=10s

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="${2//[_,]/}"; shift 2 ;;
        --queries) queries="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --checkpoint-interval) interval="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
WEIR="${WEIR:-weir}"
command -v "$WEIR" >/dev/null || { echo "weir binary '$WEIR' not found: set WEIR=/path/to/weir" >&2; exit 1; }
source "$here/lib.sh"

# One run's rps_per_core, its RESULT line echoed to stderr.
rate() {
    local out line
    out="$("$WEIR" "$@")" || { echo "weir $* failed" >&2; return 1; }
    line="$(grep '^RESULT ' <<< "$out")"
    echo "$line" >&2
    field "$line" rps_per_core
}

rows=()
for q in $queries; do
    file="$repo/examples/sql/nexmark/$q.sql"
    [ -f "$file" ] || { echo "no query file $file" >&2; exit 2; }
    typed=()
    sql=()
    for _ in $(seq "$runs"); do
        typed+=("$(rate bench nexmark --query "$q" --events "$events" --parallelism 1 \
            --checkpoint-interval "$interval")")
        sql+=("$(rate bench sql --query-file "$file" --events "$events" --parallelism 1 \
            --checkpoint-interval "$interval")")
    done
    t="$(median "${typed[@]}")"
    s="$(median "${sql[@]}")"
    rows+=("$(printf '%-6s %18s %16s %10s' "$q" "$t" "$s" \
        "$(awk -v t="$t" -v s="$s" 'BEGIN { printf "%.2f", t / s }')")")
done
echo
echo "Nexmark, $events events, parallelism 1, checkpoints every $interval, median of $runs run(s) a side"
printf '%-6s %18s %16s %10s\n' query typed_rps_per_core sql_rps_per_core typed/sql
printf '%s\n' "${rows[@]}"
