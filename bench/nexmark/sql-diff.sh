#!/usr/bin/env bash
# Nexmark in SQL, weir against Apache Flink 2.3.0: runs each query file with `weir sql` and
# with Flink's SQL planner (weir.bench.NexmarkSql --output) over the same generated events,
# and compares their result rows. Prints per query `same` or the first rows that differ,
# and exits non-zero if any query differs or fails. See README.md.
#
#   bench/nexmark/sql-diff.sh [--events N] [--parallelism P] [--tolerance REL] [--exact]
#                             [--option TABLE.KEY=VALUE ...] [--keep DIR] [QUERY.sql ...]
#
# Default: every examples/sql/nexmark/q*.sql, 100000 events, parallelism 1, doubles paired
# within 1e-12 relative (--exact: not at all). --option sets a table's option on both sides
# (bid.delayed.per-mille=100: late bids). Environment: WEIR (the weir binary, default
# `weir` on PATH), FLINK_JAVA_OPTS (default "-Xmx4g"), JAVA (default `java`), MVN (`mvn`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
events=100000
parallelism=1
tolerance=1e-12
keep=""
files=()
options=()

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="${2//[_,]/}"; shift 2 ;;
        --parallelism) parallelism="$2"; shift 2 ;;
        --tolerance) tolerance="$2"; shift 2 ;;
        --exact) tolerance=0; shift ;;
        --keep) keep="$2"; shift 2 ;;
        --option) options+=(--option "$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
        *) files+=("$1"); shift ;;
    esac
done
if [ ${#files[@]} -eq 0 ]; then
    mapfile -t files < <(ls "$repo"/examples/sql/nexmark/q*.sql | sort -V)
fi

JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
WEIR="${WEIR:-weir}"
PYTHON="${PYTHON:-python3}"
read -r -a java_opts <<< "${FLINK_JAVA_OPTS:--Xmx4g}"
source "$here/lib.sh"

command -v "$JAVA" >/dev/null || { echo "no java (17+) on PATH" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "no python3 on PATH" >&2; exit 1; }
command -v "$WEIR" >/dev/null || { echo "weir binary '$WEIR' not found: set WEIR=/path/to/weir" >&2; exit 1; }
classpath="$(flink_classpath)"

# weir's tables: person, auction and bid are built into weir sql; --option sets their
# number of events.
weir_tables=(--option "person.events.num=$events" --option "auction.events.num=$events"
    --option "bid.events.num=$events")
weir_tables+=(${options[@]+"${options[@]}"})

if [ -n "$keep" ]; then
    work="$keep"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/weir-sql-diff.XXXXXX")"
fi

echo "Nexmark SQL, weir against Flink: $events events, parallelism $parallelism (outputs in $work)"
failed=0
for file in "${files[@]}"; do
    q="$(basename "$file" .sql)"
    dir="$work/$q"
    rm -rf "$dir"
    mkdir -p "$dir"
    file="$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
    result=""

    # weir, its sink tables swapped for the filesystem connector's JSON lines.
    if ! "$PYTHON" "$here/sqldiff.py" sink "$file" "$dir/weir-out" > "$dir/$q.sql" 2> "$dir/weir.err"; then
        result="FAILED: $(tail -1 "$dir/weir.err")"
    elif ! (cd "$dir" && "$WEIR" sql "${weir_tables[@]}" -f "$dir/$q.sql" -p "$parallelism" \
            --catalog "$dir/catalog" --checkpoint-dir "$dir/checkpoints" \
            > "$dir/weir.out" 2> "$dir/weir.err"); then
        result="FAILED: weir: $(tail -n 3 "$dir/weir.err" | tr '\n' ' ')"
    else
        find "$dir/weir-out" -maxdepth 1 -type f -name 'part-*' -print0 2>/dev/null \
            | sort -z | xargs -0 -r cat > "$dir/weir.jsonl"
    fi
    # An updating result, which no file takes: weir's print connector's changelog.
    if grep -q "cannot take an updating result" "$dir/weir.err" 2>/dev/null; then
        result=""
        if ! "$PYTHON" "$here/sqldiff.py" sink "$file" - > "$dir/$q.sql" 2> "$dir/weir.err"; then
            result="FAILED: $(tail -1 "$dir/weir.err")"
        elif ! (cd "$dir" && "$WEIR" sql "${weir_tables[@]}" -f "$dir/$q.sql" -p "$parallelism" \
                --catalog "$dir/catalog" --checkpoint-dir "$dir/checkpoints" \
                > "$dir/weir.out" 2> "$dir/weir.err"); then
            result="FAILED: weir: $(tail -n 3 "$dir/weir.err" | tr '\n' ' ')"
        elif ! "$PYTHON" "$here/sqldiff.py" fromprint "$file" < "$dir/weir.out" > "$dir/weir.jsonl" 2> "$dir/weir.err"; then
            result="FAILED: $(tail -1 "$dir/weir.err")"
        fi
    fi

    # Flink, its sinks replaced by NexmarkSql --output.
    if [ -z "$result" ] && ! "$JAVA" "${java_opts[@]}" -cp "$classpath" weir.bench.NexmarkSql \
            --sql "$file" --events "$events" --parallelism "$parallelism" \
            ${options[@]+"${options[@]}"} --output "$dir/flink.jsonl" \
            > "$dir/flink.out" 2> "$dir/flink.err"; then
        result="FAILED: flink: $( (grep -m1 -E 'Exception|error' "$dir/flink.err" || tail -n 1 "$dir/flink.err") | cut -c1-400)"
    fi

    if [ -n "$result" ]; then
        printf '%-5s %s\n' "$q" "$result"
        failed=1
        continue
    fi
    LC_ALL=C sort "$dir/weir.jsonl" > "$dir/weir.sorted"
    LC_ALL=C sort "$dir/flink.jsonl" > "$dir/flink.sorted"
    # In file order: a changelog into a keyed sink folds per key.
    report="$("$PYTHON" "$here/sqldiff.py" compare "$dir/weir.jsonl" "$dir/flink.jsonl" \
        --tolerance "$tolerance" --key "$("$PYTHON" "$here/sqldiff.py" key "$file")")" || failed=1
    printf '%-5s %s\n' "$q" "$report"
done

if [ "$failed" = 0 ] && [ -z "$keep" ]; then
    rm -rf "$work"
else
    echo "(outputs kept in $work: QUERY/weir.sorted and QUERY/flink.sorted)"
fi
exit "$failed"
