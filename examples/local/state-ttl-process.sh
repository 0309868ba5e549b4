#!/bin/sh
# The intrusion-detection job (a keyed process function) with no invalid
# events and a state TTL of 50 ms, at 200 events/s: an address's events come
# about 300 ms apart, so its state has expired by its next event, which is then
# checked as its first. Every alert is an address found back in "Initial"; with
# a TTL of an hour the same run raises none.
set -eu
WEIR=${WEIR:-weir}
"$WEIR" run state-machine -- --records 400 --rate 200 --state-ttl 50ms --output forgot
"$WEIR" run state-machine -- --records 400 --rate 200 --state-ttl 1h --output kept
cat forgot/part-* | awk '
    !/Initial/ { print "an alert in a state other than Initial: " $0; exit 1 }
    END { if (NR == 0) { print "no address was forgotten"; exit 1 }
          print NR " events found their address forgotten" }'
if [ -n "$(cat kept/part-*)" ]; then echo "alerts with a TTL of an hour"; exit 1; fi
