#!/bin/sh
# Count the words of weir's README; the last line of each word holds its total.
set -eu
WEIR=${WEIR:-weir}
here=$(cd "$(dirname "$0")" && pwd)
"$WEIR" run wordcount -- --input "$here/../../README.md" --output wordcount-out
cat wordcount-out/part-* | sort -t, -k2 -n -r | head -5
