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

.PHONY: all setup build test test-thorough quickstart bench sanitize fuzz clean

all: test

$(VENV)/.setup-done: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "setuptools>=64" wheel "Cython>=3.0" "numpy>=1.26" "scipy>=1.11"
	$(PY) -m pip install --no-build-isolation -e ".[test,images,plot]"
	if [ -f $(PLUGIN)/pyproject.toml ]; then $(PY) -m pip install --no-build-isolation -e $(PLUGIN); fi
	touch $@

setup: $(VENV)/.setup-done

# Rebuild the Cython kernels in place (after editing cnnframe_ext/*.pyx or *.pxd).
build: setup
	$(PY) setup.py build_ext --inplace

test: build
	$(PY) -m pytest -q

test-thorough: build
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q

quickstart: build
	$(VENV)/bin/cnnframe train $(MAIN_CONFIG) --out $(MAIN_OUT) --resume

bench: build
	$(PY) benchmarks/bench_kernels.py
	$(PY) benchmarks/bench_train.py

# Kernel and fuzz tests under a bounds-checked build and an AddressSanitizer build.
sanitize: build
	PYTHON=$(PY) tests/sanitizers/run_sanitizers.sh tests/functional tests/fuzz

# The atheris harness for a bounded time (seconds).
fuzz: build
	$(PY) -m pip install "atheris>=2"
	tests/fuzz/run_atheris.sh 60

clean:
	rm -rf build $(VENV) cnnframe_ext/*.c cnnframe_ext/*.so *.egg-info
