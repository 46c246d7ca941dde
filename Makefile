# One entry point for setup, tests and the main job; each target builds what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PLUGIN := examples/plugins/cnnframe_swish

.PHONY: all setup build test test-thorough quickstart bench clean

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

# The main job: train the quick start (or CIFAR-10 when CNNFRAME_DATA points at it).
quickstart: build
	$(VENV)/bin/cnnframe train examples/configs/shapes_quickstart.toml --out runs/quickstart

bench: build
	$(PY) benchmarks/bench_kernels.py

clean:
	rm -rf build $(VENV) cnnframe_ext/*.c cnnframe_ext/*.so *.egg-info
