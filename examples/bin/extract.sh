#!/bin/sh
# Example `exec` program for keys-fanout.yaml: "extracts" one key.
# stdin:  the Task's effective input, compact JSON: {"key":"2026-11-20/orders","run":"demo"}
# stdout: the result, JSON: {"key":"2026-11-20/orders","rows":N}
# A real program would parse its input with a JSON library (or jq); sed is enough here
# because etlrun writes compact JSON and these keys hold no quotes.
in=$(cat)
key=$(printf '%s' "$in" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
run=$(printf '%s' "$in" | sed -n 's/.*"run":"\([^"]*\)".*/\1/p')
sleep 0.3

case $key in
*/payments)
    # A permanent failure: an error object on stdout and a non-zero exit status
    # make etlrun raise the error "Extract.NoData" with this cause.
    printf '{"Error":"Extract.NoData","Cause":"no export for %s"}\n' "$key"
    exit 1
    ;;
*/refunds)
    # A transient failure: the first attempt of each execution fails (stderr becomes the
    # cause of States.TaskFailed), the retry succeeds and removes the marker, so the
    # next run with the same --name fails once again.
    marker="${TMPDIR:-/tmp}/etlrun-keys-fanout.$run.refunds"
    if [ ! -e "$marker" ]; then
        : >"$marker"
        echo "connection reset while reading $key" >&2
        exit 75
    fi
    rm -f "$marker"
    ;;
esac

rows=$(printf '%s' "$key" | cksum | cut -d ' ' -f 1)
printf '{"key":"%s","rows":%d}\n' "$key" $((rows % 1000))
