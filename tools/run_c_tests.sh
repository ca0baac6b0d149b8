#!/usr/bin/env bash
# run_c_tests.sh — checks a staged build from C: headers as C11/C++17, exported ABI, SONAME, and the C host test.
#
# Usage: tools/run_c_tests.sh STAGE_DIR      (e.g. build/, as staged by `make`)
#
# The C host test (Tests/c/api/*.c with the shared Tests/c/check.c, one program) and the allocation test
# (Tests/c/test_no_alloc.c) are built the way a user builds against moert: with the flags of the staged moert.pc
# (which carry an rpath to the staged lib/). The AVX-512 kernel test (Tests/c/test_emulated_avx512.c) is built from
# the kernel sources with every x86 intrinsic emulated (needs libsimde-dev), the worker pool's test
# (Tests/c/test_pool.c) from the kernel sources natively and under ThreadSanitizer. The last line printed is "N
# passed, M failed", counting the programs' checks and this script's own.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STAGE_DIR" >&2
    exit 2
fi
STAGE="$(cd "$1" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LIB="$STAGE/lib/libmoert.so"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0

# Records the result of one check; a failing check prints its reason (indented) before calling fail.
pass() { echo "ok    $1"; passed=$((passed + 1)); }
fail() { echo "FAIL  $1"; failed=$((failed + 1)); }

# The functions declared with MOERT_API in the public headers, one per line, sorted. A declaration may span
# several lines and may be preceded by MOERT_DEPRECATED(...); the name is the identifier before the first "(".
declared_api() {
    awk '
        /^[[:space:]]*#/ { next }
        !collecting && /^[[:space:]]*(MOERT_DEPRECATED\(.*\)[[:space:]]*)?MOERT_API[[:space:]]/ {
            collecting = 1; decl = ""
        }
        collecting {
            decl = decl " " $0
            if (index($0, ";") || index($0, "{")) {
                sub(/.*MOERT_API[[:space:]]/, "", decl)
                sub(/[[:space:]]*\(.*/, "", decl)
                n = split(decl, words, /[^A-Za-z0-9_]+/)
                print words[n]
                collecting = 0
            }
        }
    ' include/moert*.h | sort -u
}

# The GLOBAL symbols the library defines in its dynamic symbol table (uppercase nm types), sorted.
exported_symbols() {
    nm -D --defined-only "$LIB" | awk '$2 ~ /^[A-Z]$/ { print $3 }' | sed 's/@.*//' | sort -u
}

# Compiles each public header alone, warnings as errors: $1 names the language, the rest is the compiler command.
check_headers_compile() {
    local h what
    for h in moert.h moert_plugin.h; do
        what="$h compiles as $1"
        if echo "#include <$h>" | "${@:2}" -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$STAGE/include" - \
            2>"$WORK/header.err"; then
            pass "$what"
        else
            sed 's/^/      /' "$WORK/header.err"; fail "$what"
        fi
    done
}

check_staged_header() {
    local h ok=1
    for h in include/moert*.h; do
        cmp -s "$h" "$STAGE/include/$(basename "$h")" || { echo "      $STAGE/include/$(basename "$h") differs from $h"; ok=0; }
    done
    if [[ $ok == 1 ]]; then pass "staged headers match include/"; else fail "staged headers match include/"; fi
}

check_abi() {
    declared_api >"$WORK/declared"
    exported_symbols >"$WORK/exported"
    if [[ ! -s "$WORK/declared" ]]; then
        echo "      no MOERT_API declarations found in include/moert*.h"; fail "exported symbols = MOERT_API set"
    elif cmp -s "$WORK/declared" "$WORK/exported"; then
        pass "exported symbols = MOERT_API set ($(wc -l <"$WORK/declared") functions)"
    else
        comm -23 "$WORK/declared" "$WORK/exported" | sed 's/^/      declared, not exported: /'
        comm -13 "$WORK/declared" "$WORK/exported" | sed 's/^/      exported, not declared: /'
        fail "exported symbols = MOERT_API set"
    fi
}

check_soname() {
    local soname
    soname="$(readelf -d "$LIB" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')"
    if [[ "$soname" == "libmoert.so.1" ]]; then
        pass "SONAME is libmoert.so.1"
    else
        echo "      SONAME is '${soname}'"; fail "SONAME is libmoert.so.1"
    fi
}

check_no_swift_runtime() {
    if ldd "$LIB" >"$WORK/ldd" && ! grep -qi 'libswift' "$WORK/ldd"; then
        pass "no libswift* dependency"
    else
        grep -i 'libswift\|not found' "$WORK/ldd" | sed 's/^/      /' || true
        fail "no libswift* dependency"
    fi
}

# Every MOERT_API function is called by name from a C test program built with -Wall -Werror against the library:
# the host test (Tests/c/api) or the plugin ABI test (Tests/c/test_plugin_abi.c).
check_api_called() {
    local name missing=0
    while read -r name; do
        if ! grep -qE "\b${name}[[:space:]]*\(" Tests/c/api/*.c Tests/c/test_plugin_abi.c; then
            echo "      $name is called by no C test"
            missing=1
        fi
    done < <(declared_api)
    if [[ $missing == 0 ]]; then pass "every MOERT_API function is called from C"
    else fail "every MOERT_API function is called from C"; fi
}

# Builds the C program NAME from SOURCES (with Tests/c/check.c) as a user builds against moert, runs it on the
# fixtures, and adds its "N passed, M failed" to the totals.
run_c_program() {
    local name="$1" flags
    shift
    flags="$(PKG_CONFIG_PATH="$STAGE/lib/pkgconfig" pkg-config --cflags --libs moert)"
    # shellcheck disable=SC2086  # pkg-config output is a list of flags
    if ! gcc -std=c11 -Wall -Wextra -Werror Tests/c/check.c "$@" -o "$WORK/$name" $flags -lpthread -lm; then
        fail "$name builds"
        return
    fi
    pass "$name builds"
    run_and_count "$name" Tests/fixtures
}

# Runs the built program NAME (with ARGS) and adds its "N passed, M failed" to the totals.
run_and_count() {
    local name="$1" status=0 summary
    shift
    "$WORK/$name" "$@" | tee "$WORK/$name.out" || status=$?
    summary="$(tail -n 1 "$WORK/$name.out")"
    if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        [[ $status == 0 || ${BASH_REMATCH[2]} != 0 ]] || fail "$name exit status $status"
    else
        fail "$name ended without a summary line (exit status $status)"
    fi
}

# Builds the test program NAME from Tests/c/SOURCE.c, Tests/c/check.c and the kernel sources with extra compiler
# FLAGS, runs it, and adds its counts; the build's line reads "NAME builds LABEL".
run_kernel_test() {
    local name="$1" source="$2" label="$3"
    shift 3
    if ! gcc -O2 -std=c11 -Wall -Wextra -Werror "$@" -ISources/CKernels/include -ISources/CKernels \
            Tests/c/check.c "Tests/c/$source.c" Sources/CKernels/*.c \
            -o "$WORK/$name" -lopenblas -lpthread -lm 2>"$WORK/$name.err"; then
        sed 's/^/      /' "$WORK/$name.err"
        fail "$name builds$label"
        return
    fi
    pass "$name builds$label"
    run_and_count "$name"
}

# Tests/c/test_emulated_avx512.c, every x86 intrinsic emulated in C (SIMDe, through tools/emulated_avx512/immintrin.h):
# the AVX-512 and VNNI kernels checked on any CPU.
run_emulated_avx512() {
    if [[ ! -f /usr/include/simde/x86/avx512.h ]]; then
        echo "      SIMDe's headers are missing: apt-get install libsimde-dev"
        fail "test_emulated_avx512 builds"
        return
    fi
    run_kernel_test test_emulated_avx512 test_emulated_avx512 "" -DMOERT_EMULATED_AVX512 -Itools/emulated_avx512
}

check_headers_compile C11 gcc -std=c11 -x c
check_headers_compile C++17 g++ -std=c++17 -x c++
check_staged_header
check_abi
check_api_called
check_soname
check_no_swift_runtime
run_c_program test_api Tests/c/api/*.c
run_c_program test_no_alloc Tests/c/test_no_alloc.c
run_emulated_avx512
# The worker pool runs every part of every job exactly once: natively, and under ThreadSanitizer.
run_kernel_test test_pool test_pool ""
run_kernel_test test_pool_thread test_pool " (-fsanitize=thread)" -fsanitize=thread -g

echo "${passed} passed, ${failed} failed"
[[ $failed == 0 ]]
