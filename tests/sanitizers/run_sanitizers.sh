#!/usr/bin/env bash
# Build the kernels twice in a scratch copy of the source tree and run the kernel tests
# under each build:
#   debug : CNNFRAME_DEBUG_BUILD=1  (Cython bounds checks, -O1 -g)
#   asan  : debug + CNNFRAME_SANITIZE=address,undefined (gcc AddressSanitizer, preloaded
#           into python, and UndefinedBehaviorSanitizer; a UBSan report ends the run, as
#           pytest would hide one printed by a passing test)
#   plainc: asan, built without vector extensions (-DCNNF_NO_VECTOR_EXTENSIONS: the
#           plain-C path); give it only tests that apply there (not test_direct*.py)
# Usage: tests/sanitizers/run_sanitizers.sh [pytest args...]   (default: tests/functional)
#   PYTHON=...           the interpreter (default: the repository's .venv/bin/python); a relative
#                        path is taken from the current directory, a bare name from PATH
#   SANITIZE_MODES=asan  run only some of the builds (default: "debug asan")
# The kernel tests run every instruction set the CPU has (tests/conftest.py: isa).
# The working tree's own build is left alone.  Exit status is non-zero if any run fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
# Each build runs after a cd into its scratch copy: resolve the interpreter first.
case $py in
    /*) ;;
    */*) py="$PWD/$py" ;;
    *) py=$(command -v "$py") \
           || { echo "run_sanitizers: PYTHON=$PYTHON is not on PATH" >&2; exit 2; } ;;
esac
if [ ! -x "$py" ]; then
    echo "run_sanitizers: no interpreter at $py (set PYTHON, or run make setup first)" >&2
    exit 2
fi
modes=${SANITIZE_MODES:-debug asan}
for mode in $modes; do
    case $mode in
        debug|asan|plainc) ;;
        *) echo "run_sanitizers: SANITIZE_MODES=$modes: unknown mode '$mode' (debug, asan, plainc)" >&2
           exit 2 ;;
    esac
done
if [[ " $modes " == *" asan "* || " $modes " == *" plainc "* ]] \
        && [ ! -f "$(gcc -print-file-name=libasan.so)" ]; then
    echo "run_sanitizers: gcc has no AddressSanitizer runtime (libasan.so); install it" \
         "(Debian/Ubuntu: the libasan package matching gcc --version)" >&2
    exit 2
fi
tests=("${@:-tests/functional}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for mode in $modes; do
    src="$work/$mode"
    mkdir -p "$src"
    (cd "$repo" && cp -r setup.py pyproject.toml README.md cnnframe cnnframe_ext tests "$src/")
    rm -f "$src"/cnnframe_ext/*.so "$src"/cnnframe_ext/*.c
    # No variable tracking: reports keep their line numbers (only a debugger's view of
    # variables suffers), and the instrumented direct.c compiles in 2/3 of the time or less.
    env=(CNNFRAME_DEBUG_BUILD=1
         CFLAGS="${CFLAGS:-} -fno-var-tracking -fno-var-tracking-assignments")
    run_env=()
    if [ "$mode" = plainc ]; then
        env[1]="${env[1]} -DCNNF_NO_VECTOR_EXTENSIONS"
    fi
    if [ "$mode" != debug ]; then
        env+=(CNNFRAME_SANITIZE=address,undefined)
        env[1]="${env[1]} -fno-sanitize-recover=undefined"
        # python itself is not instrumented: preload the runtime; pymalloc off so ASan sees
        # every allocation; leak reports off (the interpreter keeps memory until exit);
        # a failed huge allocation returns NULL (numpy raises MemoryError) as in a normal build.
        run_env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc
                 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
    fi
    echo "== $mode build"
    # One compiler per core: the instrumented direct.c alone takes minutes.
    (cd "$src" && env "${env[@]}" "$py" setup.py -q build_ext --inplace -j "$(nproc)" \
        > build.log 2>&1) \
        || { cat "$src/build.log"; exit 1; }
    echo "== $mode run: pytest ${tests[*]}"
    # The source copy comes first on sys.path, ahead of any installed/editable cnnframe.
    # A sanitizer report ends the run: on failure show the log's end, where the report is.
    log="$work/$mode-pytest.log"
    if (cd "$src" && env "${run_env[@]}" "$py" -m pytest -q -p no:cacheprovider "${tests[@]}" \
            > "$log" 2>&1); then
        tail -n 3 "$log"
        echo "== $mode: clean"
    else
        tail -n 80 "$log"
        echo "== $mode: FAILED"
        status=1
    fi
done
exit $status
