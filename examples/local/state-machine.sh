#!/bin/sh
# The intrusion-detection job with 1% invalid transitions: every alert line names an
# address, the state it was in, and the event it should not have seen.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run state-machine --parallelism 2 -- --records 200000 --error-rate 0.01 --output alerts
cat alerts/part-* | wc -l
cat alerts/part-* | head -3
