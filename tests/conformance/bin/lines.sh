#!/bin/sh
# lines.sh NAME: prints the lines appended by append.sh NAME as one JSON array, in
# the order they were written ([] when nothing was).
set -eu
: "${ETL_CASE_TMP:?ETL_CASE_TMP is not set}"
cat >/dev/null
if [ -f "$ETL_CASE_TMP/$1" ]; then
    printf '[%s]\n' "$(paste -sd, "$ETL_CASE_TMP/$1")"
else
    echo '[]'
fi
