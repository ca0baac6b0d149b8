#!/usr/bin/env bash
# Builds the test plugins and runs the plugin ABI test against a staged moert build: run_plugin_abi_tests.sh STAGE_DIR
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STAGE="$(cd "${1:?usage: $0 STAGE_DIR}" && pwd)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for p in faulty topk_c bad_abi no_entry init_fails; do
    gcc -O2 -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -I"$ROOT/include" \
        "$ROOT/Tests/c/plugins/$p.c" -lm -o "$OUT/libmoert_test_$p.so"
done
cp "$OUT/libmoert_test_faulty.so" "$OUT/libmoert_test_faulty_copy.so"
export PKG_CONFIG_PATH="$STAGE/lib/pkgconfig"
gcc -std=c11 -Wall -Wextra -Werror "$ROOT/Tests/c/check.c" "$ROOT/Tests/c/test_plugin_abi.c" \
    $(pkg-config --cflags --libs moert) -lm -o "$OUT/test_plugin_abi"
"$OUT/test_plugin_abi" "$ROOT/Tests/fixtures" "$OUT"
