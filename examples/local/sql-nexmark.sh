#!/bin/sh
# A SQL job over the built-in Nexmark bids: bids per auction per 10-second
# window, printed as Flink's print connector prints them, then the same job at
# parallelism 2, which prints the same rows.
set -eu
WEIR=${WEIR:-weir}
here=$(cd "$(dirname "$0")/.." && pwd)
"$WEIR" sql -f "$here/sql/bid-counts.sql" --option bid.events.num=100000 > one.txt
"$WEIR" sql -p 2 -f "$here/sql/bid-counts.sql" --option bid.events.num=100000 > two.txt
grep -q '^+I\[' one.txt
sort one.txt > one.sorted
sort two.txt > two.sorted
cmp one.sorted two.sorted
