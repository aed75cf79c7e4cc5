#!/usr/bin/env bash
# plugin.example_out_of_tree: install etlrun into a temporary prefix, build the example
# plugin from a copy of its folder (no etlrun tree in sight) with exactly the command of
# the documentation, run its example pipeline with ETLRUN_PLUGIN_PATH, then its own
# test.sh against the installed etlrun.
# Usage: example_out_of_tree.sh CMAKE BUILD_DIR PLUGIN_SOURCE_DIR
set -u

CMAKE=${1:?usage: $0 CMAKE BUILD_DIR PLUGIN_SOURCE_DIR}
BUILD=${2:?}
PLUGIN_SRC=${3:?}
T=$(mktemp -d "${TMPDIR:-/tmp}/etlrun-plugin-test.XXXXXX") || exit 2
export ETLRUN_STATE_DIR=$T/state
trap 'rm -rf "$T"' EXIT

fail() {
    echo "FAIL: plugin.example_out_of_tree: $*" >&2
    exit 1
}
for tool in cc pkg-config nm; do
    command -v "$tool" >/dev/null || fail "'$tool' is needed and not installed"
done

# --- install ---
PREFIX=$T/prefix
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$T/install.log" 2>&1 ||
    fail "cmake --install $BUILD --prefix $PREFIX failed: $(cat "$T/install.log")"
for f in bin/etlrun include/etlrun/connector.h include/etlrun/error.h; do
    [ -f "$PREFIX/$f" ] || fail "cmake --install did not install $f"
done
pc=$(find "$PREFIX" -name etlrun-connector.pc)
[ -n "$pc" ] && [ "$(echo "$pc" | wc -l)" = 1 ] ||
    fail "expected one etlrun-connector.pc under $PREFIX, found: '$pc'"
[ -d "$(dirname "$pc")/../etlrun/plugins" ] || fail "no plugin directory installed beside $pc"
export PKG_CONFIG_PATH=$(dirname "$pc")

# The pkg-config file must describe this install, wherever it was put: a .pc that
# names the configure-time prefix would build against other (or no) headers.
cflags=$(pkg-config --cflags etlrun-connector) || fail "pkg-config --cflags etlrun-connector failed"
incdir=$(printf '%s\n' $cflags | sed -n 's/^-I//p' | head -1)
[ -n "$incdir" ] && [ "$(realpath "$incdir")" = "$(realpath "$PREFIX/include")" ] ||
  fail "pkg-config --cflags etlrun-connector gives '$cflags', not -I$PREFIX/include: the" \
       ".pc file is not relocatable (write prefix=\${pcfiledir}/../.. in it)"
case x in
x) ;;
esac
plugindir=$(pkg-config --variable=plugindir etlrun-connector)
case $plugindir in
"$PREFIX"/*) [ -d "$plugindir" ] || fail "plugindir $plugindir does not exist" ;;
*) fail "pkg-config --variable=plugindir gives '$plugindir', outside $PREFIX" ;;
esac

# --- build out of tree, with the documented command ---
mkdir "$T/src"
cp "$PLUGIN_SRC"/jsonl.c "$PLUGIN_SRC"/example.yaml "$PLUGIN_SRC"/people.jsonl \
    "$PLUGIN_SRC"/people.expected.jsonl "$PLUGIN_SRC"/test.sh "$PLUGIN_SRC"/Makefile "$T/src/" ||
    fail "cannot copy the example plugin from $PLUGIN_SRC"
(cd "$T/src" && cc $(pkg-config --cflags etlrun-connector) -shared -fPIC -o jsonl.so jsonl.c) \
    >"$T/cc.log" 2>&1 || fail "the documented build command failed: $(cat "$T/cc.log")"
# The example is what authors copy: it stays clean under strict warnings.
(cd "$T/src" && cc $(pkg-config --cflags etlrun-connector) -std=c11 -pedantic -Wall -Wextra \
    -Werror -shared -fPIC -o strict.so jsonl.c) >"$T/cc.log" 2>&1 ||
    fail "jsonl.c has warnings: $(cat "$T/cc.log")"
# It links nothing of etlrun's: everything comes through the etl_host table.
undefined=$(nm -D --undefined-only "$T/src/jsonl.so" | grep -E ' etl_| host_| stage_' || true)
[ -z "$undefined" ] || fail "jsonl.so needs symbols of etlrun: $undefined"
rm -f "$T/src/strict.so"

# --- run the example pipeline, finding the plugin through ETLRUN_PLUGIN_PATH ---
(cd "$T/src" && ETLRUN_PLUGIN_PATH=$T/src "$PREFIX/bin/etlrun" example.yaml \
    --stage-dir "$T/stage" --input "{\"in\": \"people.jsonl\", \"out\": \"$T/out.jsonl\"}") \
    >"$T/run.out" 2>"$T/run.err" </dev/null ||
    fail "the example pipeline failed: $(cat "$T/run.err")"
[ "$(cat "$T/run.out")" = "{\"read\":4,\"written\":4,\"path\":\"$T/out.jsonl\"}" ] ||
    fail "unexpected output of the example pipeline: $(cat "$T/run.out")"
cmp -s "$T/out.jsonl" "$T/src/people.expected.jsonl" ||
    fail "out.jsonl differs from people.expected.jsonl: $(diff "$T/out.jsonl" "$T/src/people.expected.jsonl")"
echo "ok - built out of tree against $PREFIX, example pipeline run"

# --- the plugin's own test, against the installed etlrun ---
ETLRUN=$PREFIX/bin/etlrun bash "$T/src/test.sh" || fail "examples/plugins/jsonl/test.sh failed"
