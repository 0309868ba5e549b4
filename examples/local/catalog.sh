#!/bin/sh
# The data dictionary on a local directory: register a topic from its DDL,
# one topic carrying two message structures from sample messages (one table
# each), and an Avro topic from its schema; then list, show and drop.
set -eu
WEIR=${WEIR:-weir}
here=$(cd "$(dirname "$0")/.." && pwd)
export WEIR_CATALOG=catalog
"$WEIR" catalog add -f "$here/sql/clicks.sql"
"$WEIR" catalog add --name app --topic app-events --sample "$here/sql/app-events.jsonl" \
    --discriminator kind --watermark "at - 2s"
"$WEIR" catalog add --name sums_in --topic sums-in --avro-schema "$here/schemas/keyed-sum-input.avsc"
"$WEIR" catalog list
"$WEIR" catalog show app_purchase
"$WEIR" catalog drop sums_in
test "$("$WEIR" catalog list | wc -l)" -eq 4
