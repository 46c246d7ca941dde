# One entry point for setup, tests and the main job; each target builds what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PLUGIN := examples/plugins/cnnframe_swish

# The main job trains CIFAR-10 when CNNFRAME_DATA points at a copy, else the Shapes quick start.
ifdef CNNFRAME_DATA
MAIN_CONFIG := examples/configs/cifar10_small.toml
MAIN_OUT    := runs/cifar10_small
else
MAIN_CONFIG := examples/configs/shapes_quickstart.toml
MAIN_OUT    := runs/quickstart
endif

.PHONY: all setup build docs test test-thorough test-thorough-slice quickstart bench sanitize sanitize-quick fuzz clean

all: test

$(VENV)/.setup-done: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "setuptools>=64" wheel "Cython>=3.0" "numpy>=1.26" "scipy>=1.11"
	$(PY) -m pip install --no-build-isolation -e ".[test,images,plot,mpi,onnx,onnxruntime,docs]"
	if [ -f $(PLUGIN)/pyproject.toml ]; then $(PY) -m pip install --no-build-isolation -e $(PLUGIN); fi
	touch $@

setup: $(VENV)/.setup-done

# `pip install -e` in setup compiles the kernels once.  `build` recompiles in place only the
# modules whose .so is missing or older than their .pyx, any .pxd, any C header in
# cnnframe_ext/src/ or setup.py (after an edit to
# cnnframe_ext/*.pyx or *.pxd), passing their names to setup.py in CNNFRAME_EXTENSIONS.
build: setup
	@suffix=$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'); \
	stale=; \
	for pyx in cnnframe_ext/*.pyx; do \
	    so=$${pyx%.pyx}$$suffix; \
	    newer=$$(find "$$pyx" cnnframe_ext/*.pxd cnnframe_ext/src/*.h setup.py -newer "$$so" 2>/dev/null); \
	    if [ ! -f "$$so" ] || [ -n "$$newer" ]; then \
	        stale=$${stale:+$$stale,}$$(basename "$$pyx" .pyx); \
	    fi; \
	done; \
	if [ -z "$$stale" ]; then echo "kernels up to date"; else \
	    echo "CNNFRAME_EXTENSIONS=$$stale $(PY) setup.py build_ext --inplace"; \
	    CNNFRAME_EXTENSIONS=$$stale $(PY) setup.py build_ext --inplace; \
	fi

test: build
	$(PY) -m pytest -q

test-thorough: build
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q

# The slice of test-thorough that CI runs (a few minutes): the conv reference and per-algorithm
# tests and the functional fuzz contract at 25x their default example counts.
test-thorough-slice: build
	$(PY) -m pytest -q --hypothesis-profile=thorough tests/test_hypothesis_profiles.py \
	    tests/functional/test_conv_reference.py tests/functional/test_conv_algorithms.py \
	    "tests/fuzz/test_fuzz_functional.py::test_functional_contract"

# The documentation site (docs/_build/html/index.html), warnings as errors; it runs the
# tutorials to draw their figures.
docs: build
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

quickstart: build
	$(VENV)/bin/cnnframe train $(MAIN_CONFIG) --out $(MAIN_OUT) --resume

bench: build
	$(PY) benchmarks/bench_kernels.py
	$(PY) benchmarks/bench_train.py

# Kernel and fuzz tests under a bounds-checked build and an ASan + UBSan build (each built
# in a scratch copy; the interpreter is passed by absolute path, as the script cds there).
# Then the kernel tests that apply without vector extensions (no direct kernels there) under
# the plain-C ASan + UBSan build.  The kernel tests run every instruction set the CPU has
# (tests/conftest.py: isa); AVX-512 paths are sanitized only on an AVX-512 machine.
SANITIZE_PLAINC_TESTS := $(addprefix tests/functional/,test_normalization.py \
    test_batch_norm_paths.py test_pooling.py test_out.py test_errors.py test_norms.py \
    test_activations_extra.py test_activation_math.py test_depthwise.py test_resample.py \
    test_conv_transpose.py test_correlate.py test_conv.py)
sanitize: setup
	PYTHON=$(abspath $(PY)) tests/sanitizers/run_sanitizers.sh tests/functional tests/fuzz
	SANITIZE_MODES=plainc PYTHON=$(abspath $(PY)) \
	    tests/sanitizers/run_sanitizers.sh $(SANITIZE_PLAINC_TESTS)

# The slice of `sanitize` that CI runs: the AddressSanitizer build only, and the kernel tests
# of out= overlaps, error paths, convolution (every algorithm, Winograd's ragged tiles),
# pooling and batch norm.
SANITIZE_QUICK_TESTS := tests/functional/test_out.py tests/functional/test_errors.py \
                        tests/functional/test_correlate.py tests/functional/test_conv.py \
                        tests/functional/test_conv_algorithms.py \
                        tests/functional/test_pooling.py tests/functional/test_normalization.py
sanitize-quick: setup
	SANITIZE_MODES=asan PYTHON=$(abspath $(PY)) \
	    tests/sanitizers/run_sanitizers.sh $(SANITIZE_QUICK_TESTS)

# The atheris harness for a bounded time (seconds).
fuzz: build
	$(PY) -m pip install "atheris>=2"
	tests/fuzz/run_atheris.sh 60

clean:
	rm -rf build $(VENV) cnnframe_ext/*.c cnnframe_ext/*.so *.egg-info
