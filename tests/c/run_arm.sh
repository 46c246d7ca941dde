#!/bin/sh
# Builds the direct convolution kernels' C test (tests/c/test_direct_arm.c) for aarch64 with
# Debian's cross compiler and runs it under qemu-user emulation; then builds and runs the
# same test natively as a sanity check of the test itself.  The other kernel families
# (pool.h, batchnorm.h, winograd.h) are compiled for aarch64 too, not run: the Python
# tests run them.  Exit status: non-zero if a
# build or a test fails; 77 if the cross tools are missing (the pytest wrapper skips then,
# or fails under CI=true).
#
# Needs (Debian/Ubuntu): apt-get install -y gcc-aarch64-linux-gnu qemu-user
# Flags: those the extension is built with (setup.py -O3, Python's -fwrapv; -fopenmp-simd
# honours the kernels' "omp simd" loops as -fopenmp does, without the runtime); CC_NATIVE,
# CROSS_CC, QEMU and OUT override the tools and the output directory.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../cnnframe_ext/src"
if [ -n "${OUT:-}" ]; then
    out=$OUT
else  # a temporary directory, removed at the end
    out=$(mktemp -d "${TMPDIR:-/tmp}/cnnframe-c-test.XXXXXX")
    trap 'rm -rf "$out"' EXIT
fi
cross_cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU:-qemu-aarch64}
cc_native=${CC_NATIVE:-gcc}
cflags="-O3 -fwrapv -fopenmp-simd -std=gnu11 -Wall -Wextra -Wno-psabi"

for tool in "$cross_cc" "$qemu"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run_arm.sh: $tool not found (apt-get install -y gcc-aarch64-linux-gnu qemu-user)" >&2
        exit 77
    fi
done

echo "== aarch64: $cross_cc -static, run under $qemu"
# -static: the binary needs no aarch64 sysroot at run time
"$cross_cc" $cflags -static -I"$src" "$here/test_direct_arm.c" -o "$out/test_direct_aarch64" -lm
"$qemu" "$out/test_direct_aarch64"

echo "== aarch64: compile only: pool.h batchnorm.h winograd.h"
for family in pool batchnorm winograd; do
    printf '#include "%s.h"\n' "$family" |
        "$cross_cc" $cflags -Wno-unused-function -I"$src" -x c -c - -o "$out/$family.o"
done
echo "compiled"

echo "== native ($(uname -m)): $cc_native"
"$cc_native" $cflags -I"$src" "$here/test_direct_arm.c" -o "$out/test_direct_native" -lm
"$out/test_direct_native"
