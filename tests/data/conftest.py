"""Fixtures of the data tests: tiny dataset files in the real formats (tests/dataset_writers.py)."""
import pytest

import dataset_writers


@pytest.fixture
def cifar_arrays():
    return dataset_writers.make_cifar_arrays(0)


@pytest.fixture
def writers():
    return dataset_writers.Writers
