#!/bin/sh
# Nexmark q5 (the most-bid auctions per sliding event-time window) over events
# that arrive out of order, run twice: at parallelism 1, and at parallelism 2 on
# RocksDB with two failures injected. Event time makes the results identical.
set -eu
WEIR=${WEIR:-weir}
events="--query q5 --records 300000 --event-rate 10000 --delayed-per-mille 50"
# shellcheck disable=SC2086
"$WEIR" run nexmark -- $events --output calm
# shellcheck disable=SC2086
"$WEIR" run nexmark --parallelism 2 --state-backend rocksdb --checkpoint-interval 200ms \
    --inject-failures 2 -- $events --rate 300000 --output stormy
sort calm/part-* > calm.txt
sort stormy/part-* > stormy.txt
cmp calm.txt stormy.txt
echo "identical: $(wc -l < calm.txt) window results (window end, auction, bids)"
