"""Each conv2d algorithm on geometries aimed at its domain, against the reference.

Random geometries (cnnframe.testing.strategies.conv_geometries) reach Winograd in
about 1 of 2,000 examples and the direct kernel rarely, so every algorithm gets
strategies of its own (`winograd_geometries`, `direct_geometries`).  Each test
passes conv2d's and conv2d_backward's ``algorithm`` argument, or "auto", and checks,
by recording the kernels they call, that the algorithm it names was the one taken:

- ``winograd-f2`` / ``winograd-f4``: algorithm="winograd", F(2x2, 3x3) / F(4x4, 3x3) in
  the forward pass and for the input gradient (padding 1 keeps the sizes), and the
  weight gradient's F(2x2) ("winograd2", as "auto" takes it on maps under 1024 pixels);
  ``winograd-f4-grad-weight``: maps of 1024+ pixels, the weight gradient's F(4x4);
  ``winograd-any-padding``: paddings 0..2 per axis (the forward pass is Winograd; the
  backward takes what "auto" chooses).
- ``direct-dispatch-<isa>`` / ``direct-dispatch-fallback``: float32 direct-domain
  geometries with conv2d's own choice ("auto").  With the AVX-512 or AVX2 micro-kernels the
  forward pass must be direct; without them (the generic path, ``tiles() == ((2, 1),)``)
  it must fall back to im2col + GEMM or Winograd.  Only the one for this CPU is
  collected, so the test id says which path was checked.
- ``direct-kernel``: the same geometries with algorithm="direct" for the forward pass and
  the input gradient, which run on every CPU (with the micro-kernels this CPU has).
"""
import collections
import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

import cnnframe
import cnnframe.functional as F
import cnnframe.functional.conv as conv_module
import cnnframe.reference as R
from cnnframe.functional import conv_dispatch
from cnnframe.testing import strategies as cst
from hypothesis_budget import scaled

FAST_TILES = conv_dispatch.tiles() != ((2, 1),)  # the fast micro-kernels (AVX-512, AVX2) run


@contextlib.contextmanager
def recorded_algorithms():
    """Record {phase: algorithm} of the conv2d / conv2d_backward calls made inside.

    Phases: "forward", "grad_x", "grad_weight"; algorithms: "im2col", "winograd2",
    "winograd4", "direct".  The kernels are wrapped, not replaced.
    """
    taken = collections.defaultdict(list)

    def wrap(name, record):
        original = getattr(conv_module, name)

        def spy(*args, **kwargs):
            record(*args, **kwargs)
            return original(*args, **kwargs)
        return mock.patch.object(conv_module, name, spy)

    def winograd(x, weight, bias, geometry, tile, out=None, fn="conv2d", what="output",
                 cache=None):
        taken["forward" if fn == "conv2d" else "grad_x"].append(f"winograd{tile}")

    def im2col_backward(x, weight, grad_y, geometry, want_x, out):
        taken["grad_weight"].append("im2col")
        if want_x:
            taken["grad_x"].append("im2col")

    forward_kernels = conv_module._kernels

    class ForwardKernels:  # the im2col forward kernel lives in the extension module
        @staticmethod
        def conv2d_forward(*args):
            taken["forward"].append("im2col")
            return forward_kernels.conv2d_forward(*args)

        def __getattr__(self, name):
            return getattr(forward_kernels, name)

    patches = [
        wrap("direct_conv2d", lambda *a, **k: taken["forward"].append("direct")),
        wrap("direct_conv2d_grad_x", lambda *a, **k: taken["grad_x"].append("direct")),
        wrap("direct_conv2d_grad_weight", lambda *a, **k: taken["grad_weight"].append("direct")),
        wrap("_winograd_conv3x3", winograd),
        wrap("_winograd_grad_weight3x3", lambda x, grad_y, g, tile: taken["grad_weight"].append(
            f"winograd{tile}")),
        wrap("_im2col_backward", im2col_backward),
        mock.patch.object(conv_module, "_kernels", ForwardKernels()),
    ]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield taken


def run_against_reference(geom, dtype, seed, forward="auto", backward="auto"):
    """conv2d and conv2d_backward of `geom`, with algorithm=`forward` and `backward`, vs the
    float64 reference; {phase: algorithm}."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    weight = rng.standard_normal(geom.weight_shape).astype(dtype)
    bias = rng.standard_normal(geom.out_channels).astype(dtype)
    kw = geom.functional_kwargs()
    with recorded_algorithms() as taken:
        y = F.conv2d(x, weight, bias, algorithm=forward, **kw)
        grad_y = rng.standard_normal(y.shape).astype(dtype)
        grads = F.conv2d_backward(x, weight, grad_y, algorithm=backward, **kw)
    x64, w64, b64, gy64 = (a.astype(np.float64) for a in (x, weight, bias, grad_y))
    wants = (R.conv2d(x64, w64, b64, **kw),) + R.conv2d_backward(x64, w64, gy64, **kw)
    # float32: a few ulp of the sums' magnitude (F(4x4)'s transforms lose a little more)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for name, got, want in zip(("y", "grad_x", "grad_weight", "grad_bias"), (y,) + grads, wants):
        assert got.dtype == dtype and got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol * 10, atol=tol * scale, err_msg=name)
    algorithms = {phase: calls[0] for phase, calls in taken.items()}
    assert all(len(calls) == 1 for calls in taken.values()), dict(taken)
    assert set(algorithms) == {"forward", "grad_x", "grad_weight"}, dict(taken)
    return algorithms


def report(taken):
    """The algorithms taken, as hypothesis events (pytest --hypothesis-show-statistics)."""
    for phase, algorithm in sorted(taken.items()):
        event(f"{phase}: {algorithm}")


# ------------------------------------------------------------------ Winograd
# path -> (strategy, (forward, backward) algorithm arguments, the algorithm each phase
# must take; None: "auto"'s choice, recorded)
WINOGRAD = ("winograd", "winograd")
WINOGRAD_PATHS = {
    "winograd-f2": (cst.winograd_geometries(tile=2, padding=1), WINOGRAD,
                    dict(forward="winograd2", grad_x="winograd2", grad_weight="winograd2")),
    "winograd-f4": (cst.winograd_geometries(tile=4, padding=1),
                    ("winograd", {"grad_x": "winograd", "grad_weight": "winograd2"}),
                    dict(forward="winograd4", grad_x="winograd4", grad_weight="winograd2")),
    "winograd-f4-grad-weight": (
        cst.winograd_geometries(tile=4, padding=1, max_batch=1, max_channels=16,
                                min_pixels=1024), WINOGRAD,
        dict(forward="winograd4", grad_x="winograd4", grad_weight="winograd4")),
    "winograd-any-padding": (st.sampled_from([2, 4]).flatmap(
        lambda tile: cst.winograd_geometries(tile=tile)), ("winograd", "auto"),
        dict(forward=("winograd2", "winograd4"))),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", sorted(WINOGRAD_PATHS))
@settings(max_examples=scaled(10))
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_winograd_paths_match_reference(path, dtype, data, seed):
    strategy, (forward, backward), expected = WINOGRAD_PATHS[path]
    geom = data.draw(strategy, label="geometry")
    taken = run_against_reference(geom, dtype, seed, forward, backward)
    report(taken)
    for phase, want in expected.items():
        assert taken[phase] in (want if isinstance(want, tuple) else (want,)), (
            f"{path}: {phase} took {taken[phase]}, expected {want} for {geom}")
    if geom.padding == (1, 1) and backward == forward:
        # same size, the same algorithm asked of both: the input gradient takes the
        # forward's tile ("auto" may choose another algorithm for it, e.g. the direct kernel)
        assert taken["grad_x"] == taken["forward"]


@st.composite
def ragged_winograd_geometries(draw, tile):
    """3x3 stride-1 geometries whose output sizes are not both multiples of `tile`: the last
    row or column of tiles is ragged (any channel counts, paddings 0..2)."""
    oh, ow = draw(st.integers(1, 19)), draw(st.integers(1, 19))
    if oh % tile == 0 and ow % tile == 0:
        ow += draw(st.integers(1, tile - 1))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 20)), oh + 2 - 2 * ph,
             ow + 2 - 2 * pw)
    if min(shape[2:]) < 1:  # padding 2 on a 1- or 2-pixel output: no input left
        shape = shape[:2] + (oh + 2, ow + 2)
        ph = pw = 0
    return cst.ConvGeometry(shape, draw(st.integers(1, 20)), (3, 3), (1, 1), (ph, pw),
                            (1, 1), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tile", [2, 4])
@settings(max_examples=scaled(15))
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_winograd_with_ragged_tiles_matches_reference(tile, dtype, data, seed):
    """Output sizes that are not multiples of the tile: the forward pass, the input
    gradient and the weight gradient all by F(tile x tile), against the reference."""
    geom = data.draw(ragged_winograd_geometries(tile), label="geometry")
    taken = run_against_reference(geom, dtype, seed, f"winograd{tile}", f"winograd{tile}")
    assert taken == dict(forward=f"winograd{tile}", grad_x=f"winograd{tile}",
                         grad_weight=f"winograd{tile}")


# ------------------------------------------------------------------ direct kernel
DIRECT_PATHS = {
    # only the dispatch path this CPU can take is collected (the id says which)
    (f"direct-dispatch-{cnnframe.available_isas()[0]}" if FAST_TILES
     else "direct-dispatch-fallback"): (
        ("auto", "auto"), dict(forward=("direct",) if FAST_TILES else ("im2col", "winograd2",
                                                                       "winograd4"))),
    "direct-kernel": (("direct", {"grad_x": "direct"}),
                      dict(forward=("direct",), grad_x=("direct",))),
}


@pytest.mark.parametrize("path", sorted(DIRECT_PATHS))
@settings(max_examples=scaled(25))
@given(geom=cst.direct_geometries(), seed=st.integers(0, 2**31 - 1))
def test_direct_paths_match_reference(path, geom, seed):
    (forward, backward), expected = DIRECT_PATHS[path]
    taken = run_against_reference(geom, np.float32, seed, forward, backward)
    report(taken)
    for phase, want in expected.items():
        if path == "direct-dispatch-avx2" and geom.kernel_size == (1, 1):
            want = ("im2col",)  # GEMM beats the AVX2 direct kernel on 1x1 (conv_dispatch.py)
        assert taken[phase] in want, f"{path}: {phase} took {taken[phase]}, expected {want}"


def test_direct_kernel_in_float64_matches_reference():
    """algorithm="direct" in float64 too ("auto" keeps it to float32)."""
    geom = cst.ConvGeometry((2, 3, 9, 11), 5, (5, 3), (1, 1), (2, 1), (1, 1), 1)
    taken = run_against_reference(geom, np.float64, 0, "direct", {"grad_x": "direct"})
    assert taken["forward"] == "direct" and taken["grad_x"] == "direct"


def test_recorder_sees_im2col():
    """The recorder tells the algorithms apart: a strided conv is im2col in every phase."""
    geom = cst.ConvGeometry((2, 3, 9, 9), 4, (3, 3), (2, 2), (1, 1), (1, 1), 1)
    assert run_against_reference(geom, np.float32, 0) == dict(
        forward="im2col", grad_x="im2col", grad_weight="im2col")


# ---- need_grad_weight=False: a frozen conv's backward does no weight-gradient work ----

NO_GRAD_WEIGHT_CASES = [   # (algorithm, x shape, weight shape, conv arguments, dtypes)
    ("direct", (2, 8, 10, 10), (16, 8, 3, 3), dict(padding=1), [np.float32]),  # float32 only
    ("winograd2", (2, 8, 6, 6), (8, 8, 3, 3), dict(padding=1), [np.float32, np.float64]),
    ("winograd4", (2, 8, 8, 8), (8, 8, 3, 3), dict(padding=1), [np.float32, np.float64]),
    ("im2col", (2, 3, 9, 7), (4, 3, 3, 3), dict(stride=2, padding=1), [np.float32, np.float64]),
    ("depthwise", (2, 6, 9, 9), (6, 1, 3, 3), dict(padding=1, groups=6),
     [np.float32, np.float64]),
]


@pytest.mark.parametrize("algorithm, x_shape, w_shape, kw, dtype", [
    pytest.param(a, xs, ws, kw, dt, id=f"{a}-{np.dtype(dt).name}")
    for a, xs, ws, kw, dtypes in NO_GRAD_WEIGHT_CASES for dt in dtypes])
def test_need_grad_weight_false_gives_the_same_grad_x_and_no_weight_gradient(
        isa, algorithm, x_shape, w_shape, kw, dtype, rng):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(F.conv2d(x, w, **kw).shape).astype(dtype)
    full_gx = F.conv2d_backward(x, w, gy, **kw, algorithm=algorithm)[0]
    with recorded_algorithms() as taken:
        gx, gw, gb = F.conv2d_backward(x, w, gy, **kw, algorithm=algorithm,
                                       need_grad_weight=False)
    assert gw is None and gb is None
    np.testing.assert_array_equal(gx, full_gx)
    if algorithm in ("direct", "winograd2", "winograd4"):   # no weight-gradient pass ran
        assert taken["grad_weight"] == [], taken


def test_need_grad_weight_must_be_a_bool(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    with pytest.raises(TypeError, match="need_grad_weight"):
        F.conv2d_backward(x, w, np.ones((1, 3, 2, 2)), need_grad_weight="no")


def test_a_frozen_conv_layer_skips_its_weight_gradient_and_keeps_its_bias_gradient(rng):
    from cnnframe.layers.conv import Conv2d
    layer = Conv2d(in_channels=8, out_channels=8, kernel_size=3, padding=1, seed=0)
    x = rng.standard_normal((2, 8, 8, 8), dtype=np.float32)
    gy = rng.standard_normal((2, 8, 8, 8), dtype=np.float32)
    layer.forward(x)
    want_gx = layer.backward(gy).copy()
    want_gb = layer.grads["bias"].copy()
    layer.zero_grad()
    layer.frozen_params = {"weight"}
    layer.forward(x)
    with recorded_algorithms() as taken:
        gx = layer.backward(gy)
    assert taken["grad_weight"] in ([], ["im2col"])   # im2col forms it with grad_x
    np.testing.assert_array_equal(gx, want_gx)
    np.testing.assert_allclose(layer.grads["bias"], want_gb, rtol=1e-5)
    assert not layer.grads["weight"].any()
