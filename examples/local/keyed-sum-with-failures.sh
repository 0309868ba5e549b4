#!/bin/sh
# Run keyed-sum at parallelism 2, kill a task three times, and check the result is exact:
# the final sum of every key equals the sum of its values.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run keyed-sum --parallelism 2 --checkpoint-interval 200ms --inject-failures 3 --seed 7 \
    -- --records 300000 --rate 300000 --keys 100 --output keyed-sum-out
# Every record makes one output line: a record lost or written twice changes the count.
lines=$(cat keyed-sum-out/part-* | wc -l)
if [ "$lines" -ne 300000 ]; then echo "$lines output lines for 300000 records"; exit 1; fi
# Each key's largest emitted sum is its final sum; all keys together sum to 0+1+...+299999.
cat keyed-sum-out/part-* | sort -t, -k1,1n -k2,2n | awk -F, '
    { last[$1] = $2 }
    END { for (k in last) total += last[k]; expected = 299999 * 300000 / 2;
          if (total != expected) { print "sums " total " != " expected; exit 1 }
          printf "exact: all keys sum to %.0f\n", total }'
