# Shared by run.sh, run-sql.sh and sql-diff.sh (sourced, with $here set to bench/nexmark).

# The Flink jobs' jar and class path (weir.bench.Nexmark and weir.bench.NexmarkSql, one Maven
# project), built once per version of its sources into ~/.cache/weir/flink-nexmark/<hash>/
# (dependencies from Maven Central into ~/.m2). Uses $MVN.
flink_classpath() {
    local src="$here/flink" key dir cp
    key="$(cd "$src" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
    dir="${XDG_CACHE_HOME:-$HOME/.cache}/weir/flink-nexmark/$key"
    if [ -f "$dir/classpath.txt" ] && [ -f "$dir/flink-nexmark-0.1.jar" ]; then
        cp="$dir/flink-nexmark-0.1.jar:$(cat "$dir/classpath.txt")"
        # Still there, unless ~/.m2 was cleaned.
        local missing=0 entry
        IFS=: read -r -a entries <<< "$cp"
        for entry in "${entries[@]}"; do [ -e "$entry" ] || { missing=1; break; }; done
        if [ "$missing" = 0 ]; then echo "$cp"; return; fi
    fi
    echo "building the Flink jobs into $dir" >&2
    mkdir -p "$dir"
    local args=(-B -q -f "$src/pom.xml" "-Dnexmark.build.dir=$dir/target" package
        dependency:build-classpath "-Dmdep.outputFile=$dir/classpath.txt" -Dmdep.includeScope=runtime)
    # Offline first (everything may be in ~/.m2 already), then online.
    "$MVN" -o "${args[@]}" >/dev/null 2>&1 || "$MVN" "${args[@]}" >&2
    cp "$dir/target/flink-nexmark-0.1.jar" "$dir/flink-nexmark-0.1.jar"
    rm -rf "$dir/target"
    # Builds of earlier versions of the sources.
    find "$(dirname "$dir")" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
    echo "$dir/flink-nexmark-0.1.jar:$(cat "$dir/classpath.txt")"
}

# The value of key= in a RESULT line.
field() { tr ' ' '\n' <<< "$1" | sed -n "s/^$2=//p" | head -1; }

# The median of the numbers given (the mean of the middle two for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%d", v[(NR + 1) / 2]; else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
