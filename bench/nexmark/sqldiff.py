#!/usr/bin/env python3
"""Helpers of sql-diff.sh.

  sqldiff.py sink QUERY.sql DIR     the script with its INSERTs' sink tables writing JSON
                                    lines into DIR (weir's filesystem connector), on stdout
  sqldiff.py sink QUERY.sql -       the same with weir's print connector instead (for an
                                    updating result, which a file cannot take)
  sqldiff.py fromprint QUERY.sql    weir's print lines (stdin) as changelog lines of JSON
                                    rows named and typed as the sink table's columns
  sqldiff.py key QUERY.sql          the PRIMARY KEY columns of the first INSERT's sink
                                    table, comma-separated (empty when it declares none)
  sqldiff.py compare WEIR FLINK [--tolerance REL] [--show N] [--key COLS]
                                    compares two outputs of JSON lines as multisets of rows;
                                    exit 0 when they hold the same rows, 1 when not

Comparing: each line is parsed as JSON and written back canonically, numbers through
Python's float and int (a double becomes its shortest round-trip digits, so 1e10, 1.0e10
and 10000000000.0 are one value; an integer stays an integer). Rows left over on both
sides are then paired when they are equal but for doubles that differ by at most
--tolerance relative (default 1e-12; 0 turns this off); those are counted and reported,
but are not a difference. Lines that start with a change kind (+I, -U, +U, -D, then a
space) are a changelog: each side's final rows (inserts and update-afters added,
update-befores and deletes taken away) are compared instead. With --key (the sink's
primary key) a changelog is read in file order as changes per key, so an upsert stream
(update-afters without update-befores, which Flink emits for a top-1 into a sink whose
key it knows) folds to one row per key.
"""

import json
import re
import sys
from collections import Counter, defaultdict

# ---- sink --------------------------------------------------------------------------------


def mask(sql):
    """sql with the contents of quotes and comments blanked (same length), for scanning."""
    out = list(sql)
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            for k in range(i + 1, min(j, n)):
                out[k] = " "
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = " "
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                out[k] = " " if sql[k] != "\n" else "\n"
            i = j
        else:
            i += 1
    return "".join(out)


def closing(masked, open_at):
    """The index of the parenthesis closing the one at open_at."""
    depth = 0
    for i in range(open_at, len(masked)):
        if masked[i] == "(":
            depth += 1
        elif masked[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


NAME = r"(`[^`]*`|[\w$]+)"


# What may stand between a CREATE TABLE's columns and its WITH.
WITH = re.compile(
    r"\s*(?:COMMENT\s+'[^']*'\s*)?(?:PARTITIONED\s+BY\s*\([^)]*\)\s*)?(?P<with>WITH)\s*\(",
    re.I,
)


def plain(name):
    return name.strip("`").lower()


def sink(path, directory):
    sql = open(path, encoding="utf-8").read()
    masked = mask(sql)
    targets = {
        plain(m.group(1))
        for m in re.finditer(
            r"\bINSERT\s+(?:INTO|OVERWRITE)\s+(?:TABLE\s+)?" + NAME, masked, re.I
        )
    }
    if not targets:
        sys.exit(f"{path}: no INSERT INTO")
    with_clause = (
        "WITH ('connector' = 'print')"
        if directory == "-"
        else "WITH ('connector' = 'filesystem', 'path' = '%s', 'format' = 'json')"
        % directory.replace("'", "''")
    )
    edits = []
    for m in re.finditer(
        r"\bCREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + NAME + r"\s*\(",
        masked,
        re.I,
    ):
        if plain(m.group(1)) not in targets:
            continue
        end = closing(masked, m.end() - 1)
        wm = WITH.match(masked, end + 1)
        if not wm:
            sys.exit(f"{path}: table {m.group(1)} has no WITH (...) clause")
        start = wm.start("with")
        stop = closing(masked, wm.end() - 1)
        edits.append((start, stop + 1))
        targets.discard(plain(m.group(1)))
    if targets:
        sys.exit(f"{path}: the sink tables {sorted(targets)} are not declared in the script")
    for start, stop in sorted(edits, reverse=True):
        sql = sql[:start] + with_clause + sql[stop:]
    sys.stdout.write(sql)


def sink_body(path):
    """The text between the parentheses of the script's first INSERT's sink table."""
    sql = open(path, encoding="utf-8").read()
    masked = mask(sql)
    target = re.search(r"\bINSERT\s+(?:INTO|OVERWRITE)\s+(?:TABLE\s+)?" + NAME, masked, re.I)
    if not target:
        sys.exit(f"{path}: no INSERT INTO")
    for m in re.finditer(r"\bCREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + NAME + r"\s*\(", masked, re.I):
        if plain(m.group(1)) != plain(target.group(1)):
            continue
        return sql[m.end(): closing(masked, m.end() - 1)]
    sys.exit(f"{path}: the sink table is not declared in the script")


def sink_key(path):
    """The PRIMARY KEY columns of the first INSERT's sink table ([] when it has none)."""
    m = re.search(r"\bPRIMARY\s+KEY\s*\(([^)]*)\)", mask(sink_body(path)), re.I)
    return [plain(c.strip()) for c in m.group(1).split(",")] if m else []


def sink_columns(path):
    """The (name, type) of each column of the script's first INSERT's sink table."""
    body = sink_body(path)
    columns = []
    for part in re.split(r",(?![^(]*\))", body):
        words = part.split()
        if len(words) >= 2 and words[0].upper() not in ("PRIMARY", "WATERMARK", "CONSTRAINT"):
            columns.append((plain(words[0]), words[1].upper()))
    return columns


def fromprint(path):
    """Print lines such as `+U[2020-01-01, 5, NULL]` as `+U {"day":"2020-01-01",...}`."""
    columns = sink_columns(path)
    for line in sys.stdin:
        m = re.match(r"^([+-][IUD])\[(.*)\]$", line.rstrip("\n"))
        if not m:
            continue
        values = m.group(2).split(", ")
        if len(values) != len(columns):
            sys.exit(f"{len(values)} values for {len(columns)} columns (a value with ', ' in it?): {line}")
        row = {}
        for (name, kind), text in zip(columns, values):
            if text == "NULL":
                continue
            if kind.startswith(("BIGINT", "INT", "SMALLINT", "TINYINT")):
                row[name] = int(text)
            elif kind.startswith(("DOUBLE", "FLOAT", "DECIMAL")):
                row[name] = float(text)
            elif kind.startswith("BOOLEAN"):
                row[name] = text == "true"
            else:
                row[name] = text
        print(m.group(1) + " " + canonical(row))


# ---- compare -----------------------------------------------------------------------------

KIND = re.compile(r"^([+-][IUD]) (.*)$")


def canonical(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def read(path, order=None):
    """(rows as a Counter of canonical lines, changes read, is it a changelog, lines that
    differ from their canonical form); each (kind, value) is appended to order if given."""
    rows = Counter()
    changes = 0
    changelog = False
    reformatted = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            changes += 1
            m = KIND.match(line)
            kind, text = (m.group(1), m.group(2)) if m else ("+I", line)
            if m:
                changelog = True
            value = json.loads(text)
            if order is not None:
                order.append((kind, value))
            c = canonical(value)
            if c != text:
                reformatted += 1
            rows[(kind, c)] += 1
    return rows, changes, changelog, reformatted


def final(rows):
    """The rows a changelog leaves: +I and +U add a row, -U and -D take one away."""
    out = Counter()
    for (kind, c), n in rows.items():
        if kind in ("+I", "+U"):
            out[c] += n
        else:
            out[c] -= n
    negative = {c: -n for c, n in out.items() if n < 0}
    return Counter({c: n for c, n in out.items() if n > 0}), negative


def final_by_key(changes, key):
    """The rows a changelog leaves when read in order as changes per key: +I and +U set
    the key's row, -U and -D remove it."""
    rows = {}
    for kind, value in changes:
        k = tuple(canonical(value.get(c)) for c in key)
        if kind in ("+I", "+U"):
            rows[k] = canonical(value)
        else:
            rows.pop(k, None)
    return Counter(rows.values()), {}


def split_floats(value):
    """(the value with each float replaced by a marker, the floats in order)."""
    floats = []

    def walk(v):
        if isinstance(v, float):
            floats.append(v)
            return "\u0000float"
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return canonical(walk(value)), floats


def close(a, b, tolerance):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        if abs(x - y) > tolerance * max(abs(x), abs(y)):
            return False
    return True


def relative(a, b):
    worst = 0.0
    for x, y in zip(a, b):
        if x != y:
            worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


def compare(weir_path, flink_path, tolerance, show, key):
    weir_order, flink_order = [], []
    weir, weir_changes, weir_log, weir_ref = read(weir_path, weir_order)
    flink, flink_changes, flink_log, flink_ref = read(flink_path, flink_order)
    notes = []
    if (weir_log or flink_log) and key:
        weir_rows, weir_neg = final_by_key(weir_order, key)
        flink_rows, flink_neg = final_by_key(flink_order, key)
        notes.append(
            f"changelog: compared the final row per {', '.join(key)} (weir {weir_changes}"
            f" changes, flink {flink_changes})"
        )
    elif weir_log or flink_log:
        weir_rows, weir_neg = final(weir)
        flink_rows, flink_neg = final(flink)
        notes.append(
            f"changelog: compared the final rows (weir {weir_changes} changes, "
            f"flink {flink_changes})"
        )
        for side, neg in (("weir", weir_neg), ("flink", flink_neg)):
            if neg:
                notes.append(f"{side} retracts {sum(neg.values())} rows it never emitted")
    else:
        weir_rows = Counter({c: n for (_, c), n in weir.items()})
        flink_rows = Counter({c: n for (_, c), n in flink.items()})
    only_weir = weir_rows - flink_rows
    only_flink = flink_rows - weir_rows

    # Pair the rows left over that differ only in the last digits of doubles.
    paired = 0
    worst = 0.0
    if tolerance > 0 and only_weir and only_flink:
        groups = defaultdict(list)
        for c, n in only_flink.items():
            key, floats = split_floats(json.loads(c))
            if floats:
                groups[key].extend([(floats, c)] * n)
        for c, n in list(only_weir.items()):
            key, floats = split_floats(json.loads(c))
            candidates = groups.get(key)
            if not floats or not candidates:
                continue
            for _ in range(n):
                match = next(
                    (i for i, (f, _) in enumerate(candidates) if close(floats, f, tolerance)),
                    None,
                )
                if match is None:
                    break
                f, fc = candidates.pop(match)
                worst = max(worst, relative(floats, f))
                paired += 1
                only_weir[c] -= 1
                only_flink[fc] -= 1
        only_weir = +only_weir
        only_flink = +only_flink

    total_weir = sum(weir_rows.values())
    total_flink = sum(flink_rows.values())
    if weir_ref or flink_ref:
        notes.append(
            f"lines equal only once their numbers are rewritten: weir {weir_ref},"
            f" flink {flink_ref}"
        )
    if paired:
        notes.append(
            f"{paired} rows equal only within {tolerance:g} relative on doubles"
            f" (at most {worst:.3g})"
        )
    if not only_weir and not only_flink:
        print(f"same ({total_weir} rows" + "".join("; " + n for n in notes) + ")")
        return 0
    print(
        f"DIFFERENT: weir {total_weir} rows, flink {total_flink};"
        f" {sum(only_weir.values())} only in weir, {sum(only_flink.values())} only in flink"
        + "".join("; " + n for n in notes)
    )
    for side, rows in (("weir", only_weir), ("flink", only_flink)):
        lines = sorted(rows.elements())
        if lines:
            print(f"  first rows only in {side} (sorted):")
            for line in lines[:show]:
                print(f"    {line}")
    return 1


def main(argv):
    if len(argv) >= 3 and argv[0] == "sink":
        sink(argv[1], argv[2])
        return 0
    if len(argv) == 2 and argv[0] == "fromprint":
        fromprint(argv[1])
        return 0
    if len(argv) == 2 and argv[0] == "key":
        print(",".join(sink_key(argv[1])))
        return 0
    if len(argv) >= 3 and argv[0] == "compare":
        tolerance, show, key = 1e-12, 5, []
        rest = argv[3:]
        while rest:
            if rest[0] == "--tolerance":
                tolerance = float(rest[1])
            elif rest[0] == "--show":
                show = int(rest[1])
            elif rest[0] == "--key":
                key = [c for c in rest[1].split(",") if c]
            else:
                sys.exit(f"unknown argument {rest[0]}")
            rest = rest[2:]
        return compare(argv[1], argv[2], tolerance, show, key)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
