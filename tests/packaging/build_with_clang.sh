#!/usr/bin/env bash
# Build the kernels with clang in a scratch copy of the source tree and run the kernel
# tests under that build; fail if the compiler printed any warning.
# Usage: tests/packaging/build_with_clang.sh [pytest args...]
#   (default: the kernel tests: test_direct, test_pooling, test_normalization, test_conv,
#    test_isa under tests/functional)
#   PYTHON=...  the interpreter (default: the repository's .venv/bin/python)
#   CC=...      the compiler (default: clang; Debian/Ubuntu: apt-get install clang libomp-dev,
#               without libomp-dev the build is serial, which setup.py warns about)
#   CFLAGS=...  passed through, e.g. CFLAGS=-DCNNF_NO_VECTOR_EXTENSIONS builds the plain-C
#               kernels a compiler without vector extensions gets (run it with the tests
#               that do not need the direct kernels: test_pooling, test_normalization,
#               test_conv)
# The working tree's own build is left alone.  Exit status is non-zero if anything fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
case $py in
    /*) ;;
    */*) py="$PWD/$py" ;;
    *) py=$(command -v "$py") \
           || { echo "build_with_clang: PYTHON=$PYTHON is not on PATH" >&2; exit 2; } ;;
esac
if [ ! -x "$py" ]; then
    echo "build_with_clang: no interpreter at $py (set PYTHON, or run make setup first)" >&2
    exit 2
fi
cc=${CC:-clang}
if ! command -v "${cc%% *}" > /dev/null; then
    echo "build_with_clang: no compiler '$cc' (Debian/Ubuntu: apt-get install clang libomp-dev)" >&2
    exit 2
fi
if [ $# -eq 0 ]; then
    set -- tests/functional/test_direct.py tests/functional/test_pooling.py \
        tests/functional/test_normalization.py tests/functional/test_conv.py \
        tests/functional/test_isa.py
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/src"
mkdir -p "$src"
(cd "$repo" && cp -r setup.py pyproject.toml README.md cnnframe cnnframe_ext tests "$src/")
rm -f "$src"/cnnframe_ext/*.so "$src"/cnnframe_ext/*.c

echo "== build: CC=$cc CFLAGS=${CFLAGS:-}"
start=$SECONDS
(cd "$src" && CC="$cc" "$py" setup.py -q build_ext --inplace -j "$(nproc)" > build.log 2>&1) \
    || { cat "$src/build.log"; echo "== build FAILED"; exit 1; }
echo "== built in $((SECONDS - start)) s"
(cd "$src" && "$py" -c "import cnnframe; cnnframe.show_config()")
status=0
# Our headers and the Cython-generated C must compile without a warning.
if grep -E "warning:" "$src/build.log"; then
    echo "== the build printed warnings (above)"
    status=1
fi
echo "== run: pytest $*"
log="$work/pytest.log"
if (cd "$src" && "$py" -m pytest -q -p no:cacheprovider "$@" > "$log" 2>&1); then
    tail -n 3 "$log"
else
    tail -n 80 "$log"
    echo "== tests FAILED"
    status=1
fi
exit $status
