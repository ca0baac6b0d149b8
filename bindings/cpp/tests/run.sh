#!/usr/bin/env bash
# run.sh — builds the C++ binding's example and tests against a staged moert build and runs them.
#
# Usage: bindings/cpp/tests/run.sh STAGE_DIR      (e.g. build/, as staged by `make`)
#
# Both programs are compiled the way a user compiles against moert: with the flags of the staged moert.pc (which
# carry an rpath to the staged lib/). The test's last line is "N passed, M failed".
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STAGE_DIR" >&2
    exit 2
fi
STAGE="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -Ibindings/cpp)
read -r -a MOERT_FLAGS <<<"$(PKG_CONFIG_PATH="$STAGE/lib/pkgconfig" pkg-config --cflags --libs moert)"

g++ "${CXXFLAGS[@]}" bindings/cpp/examples/generate.cpp -o "$WORK/generate" "${MOERT_FLAGS[@]}"
g++ "${CXXFLAGS[@]}" bindings/cpp/tests/test_moert.cpp -o "$WORK/test_moert" "${MOERT_FLAGS[@]}" -lpthread

echo "== example: generate Tests/fixtures/mixtral"
"$WORK/generate" Tests/fixtures/mixtral 17 200 45
# The fixture's weights are random, so its text is noise: control characters are shown with cat -v.
"$WORK/generate" Tests/fixtures/mixtral --text "Hi, MoE!" | cat -v

echo "== test_moert"
"$WORK/test_moert" Tests/fixtures
