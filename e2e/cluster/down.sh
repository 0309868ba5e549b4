#!/usr/bin/env bash
# Stops what up.sh started in WORK_DIR.
# Usage: down.sh WORK_DIR
set -u
WORK="$1"
[ -f "$WORK/pids" ] || exit 0
tac "$WORK/pids" | while read -r pid; do
  kill "$pid" 2>/dev/null
done
sleep 1
tac "$WORK/pids" | while read -r pid; do
  kill -9 "$pid" 2>/dev/null
done
rm -f "$WORK/pids"
