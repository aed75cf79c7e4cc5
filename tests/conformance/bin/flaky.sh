#!/bin/sh
# flaky.sh NAME PLAN: an exec task that fails to plan, for Retry and Catch cases.
# PLAN is a comma-separated list, one entry per call of this NAME within the case:
# an error name makes that call fail with {"Error": NAME, "Cause": "call K failed"} on
# stdout and exit 1; "ok", or a call beyond the plan, succeeds with {"calls": K}.
# The call count lives in $ETL_CASE_TMP/NAME.count (a fresh directory per case).
set -eu
set -f
: "${ETL_CASE_TMP:?ETL_CASE_TMP is not set}"
cat >/dev/null
count_file="$ETL_CASE_TMP/$1.count"
calls=0
if [ -f "$count_file" ]; then
    calls=$(cat "$count_file")
fi
calls=$((calls + 1))
echo "$calls" >"$count_file"
outcome=ok
i=0
old_ifs=$IFS
IFS=,
for entry in $2; do
    i=$((i + 1))
    if [ "$i" -eq "$calls" ]; then
        outcome=$entry
    fi
done
IFS=$old_ifs
if [ "$outcome" = ok ]; then
    printf '{"calls": %d}\n' "$calls"
    exit 0
fi
printf '{"Error": "%s", "Cause": "call %d failed"}\n' "$outcome" "$calls"
exit 1
