#!/bin/sh
# A SQL job over the data dictionary, planned: register the clicks topic, then
# print the streaming plan of a windowed count per user, with each operator's
# uid and state. A query the planner cannot run is refused with its reason.
set -eu
WEIR=${WEIR:-weir}
here=$(cd "$(dirname "$0")/.." && pwd)
export WEIR_CATALOG=catalog
"$WEIR" catalog add -f "$here/sql/clicks.sql"
"$WEIR" sql --explain -f "$here/sql/clicks-per-user.sql" | tee plan.txt
grep -q "window-aggregate-" plan.txt
sed '/^INSERT/,$d' "$here/sql/clicks-per-user.sql" > sorted.sql
printf 'INSERT INTO clicks_per_user SELECT user_id, click_time, 1 AS clicks, 0 AS referred FROM clicks ORDER BY url;\n' >> sorted.sql
if "$WEIR" sql --explain -f sorted.sql 2> refused.txt; then exit 1; fi
grep "ORDER BY is not supported" refused.txt
