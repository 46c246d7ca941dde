"""Configs describing models too large for the machine are refused before anything is allocated."""
import os
import tomllib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from cnnframe.graph import Model, ModelTooLargeError, set_model_size_limit, sizes
from cnnframe.layers import BatchNorm1d, BatchNorm2d, Conv2d, Linear

EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "configs" / "cifar10_small.toml"
GiB = 2**30
PHYSICAL_MEMORY = sizes.physical_memory  # before the fixture below replaces it


@pytest.fixture(autouse=True)
def machine_with_16_gib(monkeypatch):
    """The default limit as on a machine with 16 GiB, whatever this one has."""
    monkeypatch.setattr(sizes, "physical_memory", lambda: 16 * GiB)
    monkeypatch.delenv(sizes.LIMIT_ENV, raising=False)
    yield
    set_model_size_limit(None)


def issue_config():
    """cifar10_small's model with out_channels = 2 * 10**7 in the first convolution."""
    cfg = tomllib.loads(EXAMPLE_CONFIG.read_text())["model"]
    cfg["layers"][0]["out_channels"] = 2 * 10**7
    return cfg


def peak_bytes(fn):
    """Run fn, which must raise ModelTooLargeError; return (the error, peak bytes allocated)."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelTooLargeError) as info:
            fn()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_issues_config_is_refused_before_allocating_naming_the_node():
    error, peak = peak_bytes(lambda: Model.from_config(issue_config()))
    assert peak < 2**20  # the weight alone would be 2.2 GB
    assert isinstance(error, MemoryError)
    message = str(error)
    assert "node 'conv2d_1' (conv2d) needs 168,160,000,000 bytes (156.6 GiB)" in message
    assert "parameters and their gradients 4,320,000,000 bytes" in message  # 2 x 4 x 2e7*3*3*3
    assert "its output [20000000, 32, 32]" in message
    assert "limit of 17,179,869,184 bytes (16.0 GiB) (this machine's physical memory" in message


def test_from_file_on_a_training_config_names_the_file(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(EXAMPLE_CONFIG.read_text().replace("out_channels = 32,",
                                                       "out_channels = 20000000,", 1))
    error, peak = peak_bytes(lambda: Model.from_file(path))
    assert peak < 2**20
    assert str(error).startswith(f"{path} [model]: node 'conv2d_1' (conv2d) needs")


def test_a_later_node_is_refused_before_it_is_built_counting_the_nodes_before_it():
    set_model_size_limit(10 * 2**20)
    cfg = {"input_shape": [512], "layers": [
        {"type": "linear", "in_features": 512, "out_features": 2048},
        {"type": "relu"},
        {"type": "linear", "in_features": 2048, "out_features": 256}]}
    # float32 values: parameters and gradients, outputs and their gradients
    first = 4 * (2 * (512 * 2048 + 2048) + 2 * 2048)
    relu = 4 * 2 * 2048
    second = 4 * (2 * (2048 * 256 + 256) + 2 * 256)
    with pytest.raises(ModelTooLargeError) as info:
        Model.from_config(cfg)
    assert str(info.value) == (
        f"node 'linear_2' (linear) needs {second:,} bytes (4.0 MiB): parameters and their "
        f"gradients {4 * 2 * (2048 * 256 + 256):,} bytes (4.0 MiB), its output [256] for one "
        f"image and its gradient 2,048 bytes (2.0 KiB); with the nodes before it the model "
        f"needs {first + relu + second:,} bytes (12.1 MiB) (the largest is node 'linear_1': "
        f"{first:,} bytes (8.0 MiB)); that is more than the limit of 10,485,760 bytes "
        "(10.0 MiB) (set by cnnframe.graph.set_model_size_limit)")


def test_huge_activations_with_small_parameters_are_refused():
    # A few hundred parameters, but padding 10**5 makes each image's output 200 k x 200 k.
    cfg = {"input_shape": [3, 8, 8], "layers": [
        {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
         "padding": 10**5}]}
    with pytest.raises(ModelTooLargeError, match=r"its output \[4, 200006, 200006\]"):
        Model.from_config(cfg)
    # the same through a layer measured once built: 2 x 3 x 40000 x 40000 x 4 bytes
    cfg = {"input_shape": [3, 40000, 40000], "layers": [
        {"type": "max_pool2d", "kernel_size": 1, "stride": 1}, {"type": "flatten"}]}
    with pytest.raises(ModelTooLargeError, match=r"node 'max_pool2d_1' \(max_pool2d\)"):
        Model.from_config(cfg)


def test_models_built_from_layer_objects_are_checked_too():
    set_model_size_limit(2**20)
    with pytest.raises(ModelTooLargeError, match=r"node 'fc' \(linear\) needs .*its output "
                                                  r"\[200000\]"):
        Model({"x": (4,)}, [("fc", Linear(4, 200_000), ["x"])])


def test_astype_float64_is_checked_and_leaves_the_model_as_it_was():
    model = Model.from_config({"input_shape": [256], "layers": [
        {"type": "linear", "in_features": 256, "out_features": 1024}]})  # 2 MiB in float32
    set_model_size_limit(3 * 2**20)
    with pytest.raises(ModelTooLargeError, match=r"\(4\.0 MiB\)"):
        model.astype("float64")
    assert model.dtype == np.float32 and model.params["linear_1.weight"].dtype == np.float32


def test_the_environment_variable_sets_the_limit(monkeypatch):
    cfg = {"input_shape": [512], "layers": [
        {"type": "linear", "in_features": 512, "out_features": 1024}]}
    monkeypatch.setenv(sizes.LIMIT_ENV, str(2**20))
    with pytest.raises(ModelTooLargeError, match=r"set by \$CNNFRAME_MAX_MODEL_BYTES"):
        Model.from_config(cfg)
    monkeypatch.setenv(sizes.LIMIT_ENV, str(8 * 2**20))
    assert Model.from_config(cfg).num_params() == 512 * 1024 + 1024
    monkeypatch.setenv(sizes.LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=r"\$CNNFRAME_MAX_MODEL_BYTES must be a number of bytes"):
        Model.from_config(cfg)


@pytest.mark.parametrize("nbytes", [0, -1, 1.5, True, "1"])
def test_bad_limits_are_refused(nbytes):
    with pytest.raises(ValueError, match="nbytes must be an int >= 1 or None"):
        set_model_size_limit(nbytes)


def test_physical_memory_is_at_most_the_ram():
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 2**20 < PHYSICAL_MEMORY() <= ram


@pytest.mark.parametrize("layer, in_shape", [
    (Conv2d(3, 8, 3), (3, 10, 10)),
    (Conv2d(4, 6, [3, 5], stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2,
            bias=False), (4, 11, 9)),
    (Conv2d(3, 5, 5, padding="same", dilation=2), (3, 9, 12)),
    (Conv2d(3, 5, 3, padding="valid", stride=3), (3, 7, 7)),
    (Linear(7, 3), (7,)),
    (Linear(7, 3, bias=False), (7,)),
    (BatchNorm2d(6), (6, 4, 4)),
    (BatchNorm1d(6), (6,)),
])
def test_estimates_from_the_config_match_the_built_layer(layer, in_shape):
    params, buffers, out_shape = sizes.estimate_from_config(type(layer), layer.get_config(),
                                                            in_shape)
    assert (params, buffers) == sizes.count_arrays(layer)
    assert out_shape == tuple(layer.output_shape(in_shape))


def test_a_saved_model_too_large_for_the_limit_keeps_its_error_type_and_names_the_file(tmp_path):
    model = Model.from_config({"input_shape": [256], "layers": [
        {"type": "linear", "in_features": 256, "out_features": 1024}]})  # 1 MiB in float32
    path = tmp_path / "big.cnnf"
    model.save(path)
    set_model_size_limit(2**19)
    with pytest.raises(ModelTooLargeError, match=r"big\.cnnf: .*node 'linear_1'"):
        Model.load(path)
