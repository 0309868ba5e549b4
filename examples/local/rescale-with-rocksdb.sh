#!/bin/sh
# Run keyed-sum at parallelism 2 on RocksDB, stop it with a savepoint, and resume it at
# parallelism 3 from that savepoint: the output of both runs together is exact.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run keyed-sum --parallelism 2 --state-backend rocksdb --checkpoint-interval 500ms \
    --stop-with-savepoint-after 1s --savepoint-dir savepoints \
    -- --records 200000 --rate 100000 --keys 1000 --output out 2> first.log
savepoint=$(sed -n 's/^weir: stopped with savepoint //p' first.log)
echo "stopped at parallelism 2 with savepoint $savepoint"
"$WEIR" run keyed-sum --parallelism 3 --state-backend rocksdb --restore "$savepoint" \
    -- --records 200000 --rate 100000 --keys 1000 --output out
# Every record makes one output line: a record lost or written twice changes the count.
lines=$(cat out/part-* | wc -l)
if [ "$lines" -ne 200000 ]; then echo "$lines output lines for 200000 records"; exit 1; fi
# Each key's largest emitted sum is its final sum; all keys together sum to 0+1+...+199999.
cat out/part-* | sort -t, -k1,1n -k2,2n | awk -F, '
    { last[$1] = $2 }
    END { for (k in last) total += last[k]; expected = 199999 * 200000 / 2;
          if (total != expected) { print "sums " total " != " expected; exit 1 }
          printf "exact: all keys sum to %.0f\n", total }'
