#!/bin/sh
# Stop keyed-sum with a savepoint after 1 s, then resume it from that savepoint in a
# new process; the output of both runs together is exact.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run keyed-sum --parallelism 2 --checkpoint-interval 500ms --stop-with-savepoint-after 1s \
    --savepoint-dir savepoints -- --records 200000 --rate 100000 --keys 100 --output out 2> first.log
savepoint=$(sed -n 's/^weir: stopped with savepoint //p' first.log)
echo "stopped with savepoint $savepoint after $(cat out/part-* | wc -l) output lines"
"$WEIR" run keyed-sum --parallelism 2 --restore "$savepoint" \
    -- --records 200000 --rate 100000 --keys 100 --output out
# Every record makes one output line: a record lost or written twice changes the count.
lines=$(cat out/part-* | wc -l)
if [ "$lines" -ne 200000 ]; then echo "$lines output lines for 200000 records"; exit 1; fi
# Each key's largest emitted sum is its final sum; all keys together sum to 0+1+...+199999.
cat out/part-* | sort -t, -k1,1n -k2,2n | awk -F, '
    { last[$1] = $2 }
    END { for (k in last) total += last[k]; expected = 199999 * 200000 / 2;
          if (total != expected) { print "sums " total " != " expected; exit 1 }
          printf "exact: all keys sum to %.0f\n", total }'
