#!/bin/sh
# tools/emulated_avx512.sh: the kernel tests on the AVX-512 paths (and AVX-512 VNNI), on any x86-64 CPU.
#
# Builds moert a second time (in .build/emulated-avx512) with tools/emulated_avx512/immintrin.h in front of the
# compiler's: every x86 intrinsic becomes portable C from SIMDe (Debian's libsimde-dev), and the CPU check claims
# AVX2 and AVX-512 F/BW/VL/VNNI/BF16. Then runs the kernel suites, where every kernel each product has is compared with
# double-precision loops, and the transformers parity suites with every AVX-512 kernel forced. It checks what the
# AVX-512 code computes, never its speed (an emulated instruction costs tens of real ones), nor that a real CPU
# accepts the instructions (the normal build compiles the same code for them).
#
#     tools/emulated_avx512.sh            # about 10 minutes: a full build, then the tests
set -eu
cd "$(dirname "$0")/.."
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
    echo "tools/emulated_avx512.sh: needs SIMDe's headers: apt-get install libsimde-dev" >&2
    exit 1
fi
SWIFT=${SWIFT:-swift}
SCRATCH=.build/emulated-avx512
FLAGS="-Xcc -I$PWD/tools/emulated_avx512 -Xcc -DMOERT_EMULATED_AVX512"
KERNEL_SUITES='Avx512KernelTests|KernelParityTests|QuantKernelTests|HalfKernelTests|AttentionDecodeTests|GEMVBatchTests|RopeTests'
PARITY_SUITES='TransformersParityTests|SessionTests|ExpertBudgetTests|HalfKernelTests|QuantizedModelTests|KVCacheTypeTests'  # make test-swift's

# shellcheck disable=SC2086
$SWIFT build --build-tests --scratch-path "$SCRATCH" $FLAGS
export MOERT_KERNEL_CACHE=off
# shellcheck disable=SC2086
$SWIFT test --skip-build --scratch-path "$SCRATCH" $FLAGS --filter "$KERNEL_SUITES"
echo "tools/emulated_avx512.sh: parity suites with MOERT_KERNELS=avx512"
# shellcheck disable=SC2086
MOERT_KERNELS=avx512 $SWIFT test --skip-build --scratch-path "$SCRATCH" $FLAGS --filter "$PARITY_SUITES"
echo "tools/emulated_avx512.sh: passed"
