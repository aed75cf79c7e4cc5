#!/bin/sh
# append.sh NAME: an exec task that appends its input (one JSON value) as a line to
# $ETL_CASE_TMP/NAME and prints nothing (result null). `lines.sh NAME` reads it back.
set -eu
: "${ETL_CASE_TMP:?ETL_CASE_TMP is not set}"
value=$(cat)
printf '%s\n' "$value" >>"$ETL_CASE_TMP/$1"
