"""WeightCache: the prepared forms of a conv weight (Winograd transforms, the direct
kernel's packing) kept between calls, and rebuilt whenever the weight's bytes change.

The contract checked here: a cached call returns exactly what an uncached one does, on
every algorithm that prepares the weight and every instruction set; any change to the
weight (in place, the sign of a zero, a new dtype) is a miss; copies start empty; and the
Conv2d layer uses a cache in inference passes only.
"""
import copy
import pickle

import numpy as np
import pytest

import cnnframe.functional as F
from cnnframe.functional import conv_dispatch
from cnnframe.functional._args import conv_geometry
from cnnframe.functional.conv import _G, _G43, _winograd_weights
from cnnframe.layers.conv import Conv2d

# (algorithm, input shape (N, C, H, W), F): each prepares its weight in a cached call
CASES = [
    ("direct", (1, 8, 12, 12), 16),
    ("winograd2", (1, 8, 6, 6), 16),
    ("winograd4", (2, 8, 8, 8), 12),
]


def _supported(algorithm, x_shape, f, dtype):
    w_shape = (f, x_shape[1], 3, 3)
    g = conv_geometry(x_shape, w_shape, 1, 1, 1, 1, "test")
    return conv_dispatch.supports(algorithm, "forward", g, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, x_shape, f", CASES)
def test_cached_call_equals_uncached_bit_for_bit(isa, algorithm, x_shape, f, dtype, rng):
    assert _supported(algorithm, x_shape, f, dtype)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((f, x_shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    cache = F.WeightCache()
    plain = F.conv2d(x, w, b, padding=1, algorithm=algorithm)
    first = F.conv2d(x, w, b, padding=1, algorithm=algorithm, weight_cache=cache)
    second = F.conv2d(x, w, b, padding=1, algorithm=algorithm, weight_cache=cache)
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(second, plain)
    assert (cache.misses, cache.hits) == (1, 1)


@pytest.mark.parametrize("algorithm, x_shape, f", CASES)
def test_a_changed_weight_is_a_miss_and_gives_the_new_result(algorithm, x_shape, f, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((f, x_shape[1], 3, 3)).astype(np.float32)
    cache = F.WeightCache()
    F.conv2d(x, w, padding=1, algorithm=algorithm, weight_cache=cache)
    w[0, 0, 1, 1] += 1.0          # in place, as an optimizer step writes it
    got = F.conv2d(x, w, padding=1, algorithm=algorithm, weight_cache=cache)
    np.testing.assert_array_equal(got, F.conv2d(x, w, padding=1, algorithm=algorithm))
    assert (cache.misses, cache.hits) == (2, 0)


def test_bytes_are_compared_not_values():
    """-0.0 == 0.0, but a change of sign is a change of the weight the cache must see."""
    cache = F.WeightCache()
    w = np.zeros((2, 2, 3, 3), np.float32)
    builds = []
    cache.lookup(w, "k", lambda: builds.append(1) or "built")
    w[1, 1, 2, 2] = -0.0
    cache.lookup(w, "k", lambda: builds.append(1) or "built")
    assert len(builds) == 2


def test_dtype_or_shape_change_is_a_miss():
    cache = F.WeightCache()
    w = np.ones((2, 2, 3, 3), np.float32)
    assert cache.lookup(w, "k", lambda: "f32") == "f32"
    assert cache.lookup(w.astype(np.float64), "k", lambda: "f64") == "f64"
    assert cache.lookup(np.ones((2, 2, 1, 9)), "k", lambda: "other shape") == "other shape"
    assert cache.misses == 3


def test_entries_are_bounded_oldest_first():
    cache = F.WeightCache()
    w = np.ones((1, 1, 3, 3))
    for key in range(cache.MAX_ENTRIES + 2):
        cache.lookup(w, key, lambda key=key: key)
    assert len(cache) == cache.MAX_ENTRIES
    rebuilt = []
    cache.lookup(w, 0, lambda: rebuilt.append(0) or 0)        # evicted: built again
    cache.lookup(w, cache.MAX_ENTRIES + 1, lambda: rebuilt.append(1) or 1)   # kept
    assert rebuilt == [0]


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda c: pickle.loads(pickle.dumps(c))])
def test_copies_start_empty(copier):
    cache = F.WeightCache()
    cache.lookup(np.ones((1, 1, 3, 3)), "k", lambda: np.zeros(3))
    clone = copier(cache)
    assert len(clone) == 0 and clone.hits == clone.misses == 0
    assert clone.lookup(np.ones((1, 1, 3, 3)), "k", lambda: "fresh") == "fresh"


def test_a_wrong_weight_cache_argument_names_it(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(TypeError, match="weight_cache must be a cnnframe.functional.WeightCache"):
        F.conv2d(x, w, padding=1, algorithm="direct", weight_cache={})


@pytest.mark.parametrize("tile, transform", [(2, _G), (4, _G43)])
def test_winograd_weights_are_g_w_g_transposed(tile, transform, rng):
    """The one-GEMM transform (with G (x) G) gives U = G g G^T for each (f, c) filter,
    laid out (positions, F, C)."""
    w = rng.standard_normal((5, 3, 3, 3))
    u = _winograd_weights(w, tile, 1)
    p = tile + 2
    want = np.einsum("ia,fcab,jb->ijfc", transform, w, transform).reshape(p * p, 5, 3)
    np.testing.assert_allclose(u, want, rtol=1e-13, atol=1e-13)


def test_conv2d_layer_caches_in_inference_only(isa, rng):
    layer = Conv2d(in_channels=8, out_channels=16, kernel_size=3, padding=1, seed=0)
    x = rng.standard_normal((1, 8, 12, 12), dtype=np.float32)
    y0 = layer.forward(x, training=False).copy()
    y1 = layer.forward(x, training=False).copy()
    np.testing.assert_array_equal(y0, y1)
    cache = layer._weight_cache
    # the second call reused the first's prepared weight, where auto's algorithm has one
    # (on the generic path this conv takes im2col, which reads the weight as it is)
    g = conv_geometry(x.shape, layer.params["weight"].shape, 1, 1, 1, 1, "test")
    prepares = conv_dispatch.choose_algorithm("forward", g, np.float32) != "im2col"
    assert (cache.misses, cache.hits) == ((1, 1) if prepares else (0, 0))
    used = cache.hits + cache.misses
    layer.forward(x, training=True)
    assert cache.hits + cache.misses == used      # training passes never look it up
    layer.params["weight"][...] *= 0.5            # as an optimizer step or load_state_dict
    got = layer.forward(x, training=False)
    fresh = F.conv2d(x, layer.params["weight"], layer.params["bias"], padding=1)
    np.testing.assert_array_equal(got, fresh)
