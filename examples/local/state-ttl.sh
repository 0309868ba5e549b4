#!/bin/sh
# keyed-sum on RocksDB with a state TTL of 1 s: 1,000 records at 1,000/s over
# 10 keys keep adding to their sums; then 4 records 2 s apart find their keys'
# sums expired, and each starts a new sum: its own value.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run keyed-sum --state-backend rocksdb \
    -- --keys 10 --records 1004 --rate 1000 --rate-change-at 1000 --then-rate 0.5 \
    --state-ttl 1s --output out
# Record i's value is i, so a sum that started over equals its record's index.
cat out/part-* | tail -4 | awk -F, '
    { if ($2 != 999 + NR) { print "line " NR " after the pause: " $0 " is not a new sum"; exit 1 } }
    END { print "each key idle for longer than its TTL started a new sum" }'
