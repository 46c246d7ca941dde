"""conv2d's dispatch (functional/conv_dispatch.py): each instruction set's table chooses what
its measurements say, `algorithm=` forces an algorithm or says clearly why it cannot, and
"auto" runs what the table chooses."""
import numpy as np
import pytest

import cnnframe.functional as F
from cnnframe.functional import conv_dispatch as D
from cnnframe.functional._args import ConvGeometry, conv_geometry
from cnnframe_ext import runtime

ISAS = ("avx512", "avx2", "generic")


def geometry(x_shape, w_shape, **kw):
    return conv_geometry(x_shape, w_shape, **kw)


# ------------------------------------------------------------------ the tables


def test_one_table_per_instruction_set_with_measured_rows():
    assert set(D.TABLES) == set(ISAS) == set(D.TILES)
    for isa, table in D.TABLES.items():
        assert set(table) == set(D.PASSES)
        for pass_, rows in table.items():
            for rule in rows:
                assert rule.algorithm in ("direct", "winograd2", "winograd4", "im2col", "depthwise")
                assert len(rule.measured) > 20, (isa, pass_, rule)  # quotes figures
    # the generic path's one micro-kernel never beat BLAS: no direct rows
    assert not any(rule.algorithm == "direct" for rows in D.TABLES["generic"].values()
                   for rule in rows)


def test_rows_can_hold_a_batch_condition():
    """The format has room for batch-size rules (none uses one yet)."""
    rule = D.Rule("direct", measured="a batch condition, for the format", min_batch=2,
                  max_batch=8)
    for n, holds in ((1, False), (2, True), (8, True), (9, False)):
        assert rule.holds(geometry((n, 3, 8, 8), (4, 3, 3, 3), padding=1), np.float32) == holds


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_hw,w_shape,kw,want", [
    ((16, 16), (16, 16, 3, 3), dict(padding=1), "winograd4"),
    ((16, 18), (16, 16, 3, 3), dict(padding=(1, 0)), "winograd4"),   # 16x16
    ((16, 20), (16, 16, 3, 3), dict(padding=1), "winograd4"),
    ((16, 18), (16, 16, 3, 3), dict(padding=1), "winograd2"),        # 18 columns
    # 17 rows: ragged F(4x4) tiles (fill 0.85), measured on AVX2 only
    ((17, 16), (16, 16, 3, 3), dict(padding=1), {"avx2": "winograd4", "else": "im2col"}),
    ((15, 15), (64, 64, 3, 3), dict(padding=1), {"avx2": "winograd4", "else": "im2col"}),
    ((13, 13), (16, 16, 3, 3), dict(padding=1), "im2col"),           # ragged, fill 0.66
    ((7, 7), (128, 128, 3, 3), dict(padding=1), {"avx2": "winograd2", "else": "im2col"}),
    ((8, 8), (16, 16, 3, 3), dict(padding=1), "winograd4"),          # 64 pixels
    ((4, 8), (16, 16, 3, 3), dict(padding=1), "im2col"),             # 32 pixels
    ((10, 10), (16, 16, 3, 3), dict(padding=1), "im2col"),           # 100, even
    ((16, 16), (16, 16, 3, 3), dict(padding=1, stride=2), "im2col"),
    ((16, 16), (16, 16, 3, 3), dict(padding=2, dilation=2), "im2col"),
    ((16, 16), (16, 16, 5, 5), dict(padding=2), "im2col"),
    ((16, 16), (8, 16, 3, 3), dict(padding=1), "im2col"),            # narrow
    ((16, 16), (32, 16, 3, 3), dict(padding=1, groups=2), "winograd4"),  # 16 per group
    ((16, 16), (32, 8, 3, 3), dict(padding=1, groups=2), "im2col")])  # 8 per group
def test_winograd_rows_forward(isa, dtype, x_hw, w_shape, kw, want):
    """Every table: 3x3, stride 1, no dilation, 16+ channels per group; F(4x4, 3x3) for output
    sizes that are multiples of 4 (>= 64 pixels), F(2x2, 3x3) for other even ones (>= 256);
    on AVX2 also ragged tiles where measured (15x15, 31x31; wide 7x7).  Where a direct row
    takes the conv first (float32 on AVX-512 and AVX2), not Winograd."""
    if isinstance(want, dict):
        want = want.get(isa, want["else"])
    g = geometry((2, w_shape[1] * kw.get("groups", 1), *x_hw), w_shape, **kw)
    got = D.choose_algorithm("forward", g, dtype, isa)
    assert got == want or (got == "direct" and isa != "generic" and dtype == np.float32)


# AVX2 takes F(4x4) from 16x16 maps, and on ragged tiles of fill >= 0.85 (32x30: 0.94)
AVX2_F4 = {"avx2": "winograd4", "else": "winograd2"}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("need_grad_x", [True, False])
@pytest.mark.parametrize("x_hw,w_shape,kw,want,want_without_grad_x", [
    ((16, 16), (16, 16, 3, 3), dict(padding=1), AVX2_F4, AVX2_F4),
    ((16, 18), (16, 16, 3, 3), dict(padding=(1, 0)), AVX2_F4, AVX2_F4),
    ((32, 32), (16, 16, 3, 3), dict(padding=1), "winograd4", "winograd4"),   # 1024 pixels
    ((32, 30), (16, 16, 3, 3), dict(padding=1), AVX2_F4, AVX2_F4),           # 30 columns
    ((17, 16), (16, 16, 3, 3), dict(padding=1), {"avx2": "winograd4", "else": "im2col"},
     {"avx2": "winograd4", "else": "im2col"}),
    ((7, 7), (32, 32, 3, 3), dict(padding=1), "im2col",                      # ragged 7x7:
     {"avx2": "winograd2", "else": "im2col"}),                               # grad_x im2col
    ((8, 8), (16, 16, 3, 3), dict(padding=1), "winograd2", "winograd2"),
    # grad_x of a 4x8 map goes through im2col, which then computes grad_weight too
    ((4, 8), (16, 16, 3, 3), dict(padding=1), "im2col", "winograd2"),
    ((2, 2), (16, 16, 3, 3), dict(padding=1), "im2col", "im2col"),          # 4 pixels
    ((16, 16), (16, 16, 5, 5), dict(padding=2), "im2col", "im2col"),
    ((4, 4), (256, 128, 3, 3), dict(padding=1), "im2col", "im2col"),        # wide
    ((4, 4), (128, 128, 3, 3), dict(padding=1), "im2col", "winograd2")])
def test_winograd_rows_grad_weight(isa, need_grad_x, x_hw, w_shape, kw, want,
                                   want_without_grad_x):
    """The weight gradient's rows, float64 (no direct rows there): Winograd for 3x3 stride-1
    convs with 16+ channels and even outputs of 16+ pixels, F(4x4, 3x3) from 1024 pixels
    (multiples of 4; AVX2: from 256, and on ragged tiles), F(2x2, 3x3) below; not for
    C*F >= 32768 on maps of up to 256 pixels, and not when grad_x goes through im2col
    (which then computes both)."""
    want = want if need_grad_x else want_without_grad_x
    if isinstance(want, dict):
        want = want.get(isa, want["else"])
    g = geometry((2, w_shape[1], *x_hw), w_shape, **kw)
    _, got = D.backward_algorithms("auto", g, np.float64, need_grad_x, isa=isa)
    assert got == want


# (x shape, weight shape, padding) measured faster direct / not faster (float32, AVX-512)
MEASURED_WINS = [
    ((128, 3, 32, 32), (32, 3, 3, 3), 1), ((128, 32, 32, 32), (32, 32, 5, 5), 2),
    ((64, 64, 15, 15), (128, 64, 3, 3), 1), ((64, 64, 28, 28), (16, 64, 3, 3), 1),
    ((64, 64, 8, 8), (64, 64, 3, 3), 1), ((64, 32, 12, 12), (128, 32, 3, 3), 1),
    ((64, 32, 16, 16), (32, 32, 3, 3), 1), ((64, 32, 16, 16), (64, 32, 1, 3), (0, 1)),
    ((64, 32, 16, 16), (128, 32, 1, 1), 0), ((64, 64, 4, 4), (64, 64, 3, 3), 1),
    ((64, 256, 5, 5), (256, 256, 3, 3), 1), ((64, 32, 32, 32), (32, 32, 3, 3), 1),
    ((128, 64, 8, 8), (128, 64, 3, 3), 1), ((64, 256, 16, 16), (256, 256, 3, 3), 1),
    ((64, 64, 32, 32), (32, 64, 3, 3), 1), ((32, 128, 28, 28), (128, 128, 3, 3), 1)]
MEASURED_LOSSES = [
    ((64, 64, 32, 32), (64, 64, 3, 3), 1), ((16, 128, 32, 32), (128, 128, 3, 3), 1),
    ((16, 128, 28, 28), (256, 128, 3, 3), 1), ((16, 32, 56, 56), (64, 32, 1, 1), 0),
    ((64, 256, 2, 2), (256, 256, 3, 3), 1), ((64, 256, 3, 3), (256, 256, 3, 3), 1),
    ((64, 256, 5, 5), (256, 256, 1, 1), 0)]
# the same on AVX2
MEASURED_WINS_AVX2 = [
    ((128, 3, 32, 32), (32, 3, 3, 3), 1), ((22, 32, 32, 32), (32, 32, 5, 5), 2),
    ((128, 64, 8, 8), (128, 64, 3, 3), 1), ((128, 32, 16, 16), (64, 32, 3, 3), 1),
    ((128, 256, 4, 4), (256, 256, 3, 3), 1), ((22, 64, 16, 16), (64, 64, 5, 5), 2),
    ((61, 16, 28, 28), (16, 16, 7, 7), 3), ((128, 16, 16, 16), (32, 16, 3, 3), 1)]
MEASURED_LOSSES_AVX2 = [
    ((128, 64, 16, 16), (64, 64, 3, 3), 1), ((66, 64, 16, 16), (128, 64, 3, 3), 1),
    ((128, 32, 32, 32), (32, 32, 3, 3), 1), ((43, 64, 28, 28), (64, 64, 3, 3), 1),
    ((86, 32, 28, 28), (64, 32, 3, 3), 1), ((16, 128, 32, 32), (128, 128, 3, 3), 1),
    ((64, 64, 8, 8), (64, 64, 1, 1), 0), ((64, 128, 16, 16), (128, 128, 1, 1), 0),
    ((64, 32, 16, 16), (64, 32, 1, 1), 0),
    # C*F >= 16384 on 7x7 and 8x8 maps: F(2x2) (conv_dispatch.AVX2_RAGGED_WINOGRAD2_WIDE)
    ((63, 128, 8, 8), (128, 128, 3, 3), 1), ((128, 128, 7, 7), (128, 128, 3, 3), 1)]
MEASURED = {"avx512": (MEASURED_WINS, MEASURED_LOSSES),
            "avx2": (MEASURED_WINS_AVX2, MEASURED_LOSSES_AVX2),
            "generic": ([], MEASURED_WINS + MEASURED_WINS_AVX2)}


def test_avx2_takes_the_weight_gradients_f4_from_16x16():
    """Measured on AVX2 (conv_dispatch.py): F(4x4, 3x3) is the faster weight gradient from
    16x16 maps, at every width measured; the other tables keep F(2x2) there (AVX-512: F(4x4)
    0.91-1.24x its time), and so does AVX2 on 8x8 maps."""
    for shape in ((2, 32, 28, 28), (2, 32, 16, 16), (2, 128, 24, 24)):
        g = geometry(shape, (shape[1],) * 2 + (3, 3), padding=1)
        for isa, want in (("avx2", "winograd4"), ("avx512", "winograd2"),
                          ("generic", "winograd2")):
            assert D.choose_algorithm("grad_weight", g, np.float32, isa) == want, (isa, shape)
    small = geometry((2, 32, 8, 8), (32, 32, 3, 3), padding=1)
    assert D.choose_algorithm("grad_weight", small, np.float32, "avx2") == "winograd2"


@pytest.mark.parametrize("isa", ISAS)
def test_direct_rows_follow_the_measurements(isa):
    """The forward pass goes direct where it measured faster on that instruction set, not
    where it measured slower; never in float64, nor on the generic path."""
    wins, losses = MEASURED[isa]
    for x_shape, w_shape, p in wins + losses:
        g = geometry(x_shape, w_shape, padding=p)
        got = D.choose_algorithm("forward", g, np.float32, isa)
        assert (got == "direct") == ((x_shape, w_shape, p) in wins), (x_shape, w_shape, got)
        assert D.choose_algorithm("forward", g, np.float64, isa) != "direct"


@pytest.mark.parametrize("x_shape,w_shape,kw,direct_on", [
    ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2), "avx512 avx2"),
    ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1), "avx512 avx2"),
    ((2, 32, 16, 16), (64, 32, 3, 3), dict(padding=1), "avx512 avx2"),
    ((2, 32, 32, 32), (32, 32, 3, 3), dict(padding=1), "avx512"),
    ((2, 64, 16, 16), (128, 64, 3, 3), dict(padding=1), "avx512"),
    ((2, 64, 32, 32), (64, 64, 3, 3), dict(padding=1), ""),           # Winograd
    ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2, stride=2), ""),
    ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=2, dilation=2), ""),
    ((2, 32, 32, 32), (32, 32, 5, 5), dict(padding=5), "")])          # padding > K - 1
@pytest.mark.parametrize("isa", ISAS)
def test_direct_rows_grad_x(isa, x_shape, w_shape, kw, direct_on):
    """grad_x (the stride-1 conv of grad_y with the flipped kernel) goes direct on these
    symmetric layers wherever the forward pass does, and only with padding <= K - 1."""
    g = geometry(x_shape, w_shape, **kw)
    assert (D.choose_algorithm("grad_x", g, np.float32, isa) == "direct") == (
        isa in direct_on.split())
    if kw.get("padding") != 5:
        assert (D.choose_algorithm("forward", g, np.float32, isa) == "direct") == (
            isa in direct_on.split())


@pytest.mark.parametrize("x_shape,w_shape,kw,want", [
    ((2, 32, 16, 16), (32, 32, 5, 5), dict(padding=2), "direct"),
    ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1), "direct"),
    ((2, 8, 20, 20), (16, 8, 7, 7), dict(padding=3), "direct"),
    ((2, 64, 8, 8), (128, 64, 3, 3), dict(padding=1), "winograd2"),
    ((2, 128, 8, 8), (256, 128, 3, 3), dict(padding=1), "im2col"),       # wide
    ((2, 32, 32, 32), (32, 32, 3, 3), dict(padding=1), "winograd4"),
    ((2, 3, 32, 32), (32, 3, 3, 3), dict(padding=1, stride=2), "im2col"),
    ((2, 4, 16, 16), (8, 2, 5, 5), dict(padding=2, groups=2), "im2col")])
@pytest.mark.parametrize("isa", ISAS)
def test_direct_rows_grad_weight(isa, x_shape, w_shape, kw, want):
    """The direct weight gradient for float32 stride-1 convs with few input channels or 25+
    taps; never for float64, strides or groups, nor on the generic path (im2col instead)."""
    g = geometry(x_shape, w_shape, **kw)
    got = D.choose_algorithm("grad_weight", g, np.float32, isa)
    assert got == ("im2col" if want == "direct" and isa == "generic" else want)
    assert D.choose_algorithm("grad_weight", g, np.float64, isa) != "direct"


def test_tiles_per_instruction_set():
    """The direct kernel's micro-kernels live with the tables; (2, 1) is everyone's fallback."""
    assert all(tiles[-1] == (2, 1) for tiles in D.TILES.values())
    assert D.tiles() == D.TILES[runtime.active_isa()]


# ------------------------------------------------------------------ the argument


def test_auto_runs_what_the_table_chooses(isa, rng):
    """conv2d and conv2d_backward with "auto" give bit for bit what the table's choice,
    forced, gives (on every instruction set this CPU runs: the `isa` fixture)."""
    for x_shape, w_shape, kw in [((3, 3, 16, 16), (16, 3, 3, 3), dict(padding=1)),
                                 ((3, 16, 16, 16), (32, 16, 3, 3), dict(padding=1)),
                                 ((3, 64, 16, 16), (64, 64, 3, 3), dict(padding=1)),
                                 ((3, 4, 12, 12), (8, 4, 5, 5), dict(padding=2)),
                                 ((3, 8, 8, 8), (16, 8, 1, 1), dict())]:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        g = geometry(x_shape, w_shape, **kw)
        gy = rng.standard_normal(g.out_shape).astype(np.float32)
        forward = D.choose_algorithm("forward", g, np.float32)
        assert np.array_equal(F.conv2d(x, w, **kw), F.conv2d(x, w, algorithm=forward, **kw))
        grad_x, grad_weight = D.backward_algorithms("auto", g, np.float32, True)
        auto = F.conv2d_backward(x, w, gy, **kw)
        forced = F.conv2d_backward(x, w, gy, algorithm={"grad_x": grad_x,
                                                        "grad_weight": grad_weight}, **kw)
        for a, b in zip(auto, forced):
            assert np.array_equal(a, b), (x_shape, w_shape, forward, grad_x, grad_weight)


@pytest.mark.parametrize("algorithm", ["direct", "winograd", "winograd2", "winograd4",
                                       "im2col"])
def test_every_algorithm_matches_the_reference(rng, algorithm):
    import cnnframe.reference as R
    x = rng.standard_normal((2, 4, 8, 12))
    w = rng.standard_normal((6, 4, 3, 3))
    y = F.conv2d(x, w, padding=1, algorithm=algorithm)
    np.testing.assert_allclose(y, R.conv2d(x, w, padding=1), rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(y.shape)
    # the direct weight gradient is float32 only: direct grad_x, and auto for the weights
    per_pass = {"grad_x": algorithm} if algorithm == "direct" else algorithm
    for got, want in zip(F.conv2d_backward(x, w, gy, padding=1, algorithm=per_pass),
                         R.conv2d_backward(x, w, gy, padding=1)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fn", ["conv2d", "conv2d_backward"])
@pytest.mark.parametrize("x_shape,w_shape,kw,algorithm,match", [
    ((1, 4, 9, 9), (4, 4, 3, 3), dict(stride=2), "winograd",
     r"algorithm='winograd' cannot compute .*stride 1.*got .*stride \(2, 2\)"),
    ((1, 4, 8, 8), (4, 4, 5, 5), dict(padding=2), "winograd2",
     r"algorithm='winograd2' cannot .*got kernel \(5, 5\)"),
    ((1, 4, 10, 10), (4, 4, 3, 3), dict(padding=1, stride=2), "winograd4",
     r"algorithm='winograd4' cannot .*stride 1.*got .*stride \(2, 2\)"),
    ((1, 4, 8, 8), (4, 2, 3, 3), dict(groups=2), "direct",
     r"algorithm='direct' cannot .*groups 1, got .*groups 2"),
    ((1, 4, 8, 8), (4, 4, 3, 3), dict(dilation=2), "direct", r"dilation \(2, 2\)"),
    ((1, 4, 8, 8), (4, 4, 3, 3), dict(), "fastest", r"algorithm must be one of 'auto', "),
    ((1, 4, 8, 8), (4, 4, 3, 3), dict(), None, r"algorithm must be one of .* got None")])
def test_algorithm_that_cannot_run_is_a_clear_error(fn, x_shape, w_shape, kw, algorithm,
                                                    match):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        if fn == "conv2d":
            F.conv2d(x, w, algorithm=algorithm, **kw)
        else:
            gy = np.zeros(F.conv2d(x, w, **kw).shape, np.float32)
            F.conv2d_backward(x, w, gy, algorithm=algorithm, **kw)


def test_backward_algorithm_per_gradient():
    x, w = np.ones((1, 4, 8, 8), np.float32), np.ones((4, 4, 3, 3), np.float32)
    gy = np.ones((1, 4, 10, 10), np.float32)   # padding 2
    with pytest.raises(ValueError, match=r"algorithm\['grad_x'\]='winograd' cannot compute "
                                         r"the grad_x pass.*padding at most kernel size - 1"):
        F.conv2d_backward(x, w, np.ones((1, 4, 12, 12), np.float32), padding=3,
                          algorithm={"grad_x": "winograd"})
    with pytest.raises(ValueError, match=r"unknown keys \['grad_w'\]; the valid ones are "
                                         r"'grad_x' and 'grad_weight'"):
        F.conv2d_backward(x, w, gy, padding=2, algorithm={"grad_w": "im2col"})
    with pytest.raises(ValueError, match=r"algorithm\['grad_weight'\] must be one of"):
        F.conv2d_backward(x, w, gy, padding=2, algorithm={"grad_weight": "fft"})
    with pytest.raises(ValueError, match=r"direct weight gradient is float32 only, got float64"):
        F.conv2d_backward(x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64),
                          padding=2, algorithm="direct")
    # grad_x's algorithm does not matter when grad_x is not computed
    gx, gw, _ = F.conv2d_backward(x, w, gy, padding=2, need_grad_x=False,
                                  algorithm={"grad_x": "winograd", "grad_weight": "im2col"})
    assert gx is None and gw.shape == w.shape


def test_supports_says_what_resolve_accepts():
    g = geometry((1, 4, 8, 8), (4, 4, 3, 3), padding=1)
    assert D.supports("winograd4", "forward", g, np.float32)
    # any output size (ragged tiles), but only 3x3 stride-1 undilated kernels
    assert D.supports("winograd4", "forward", geometry((1, 4, 10, 10), (4, 4, 3, 3),
                                                        padding=1), np.float32)
    assert not D.supports("winograd4", "forward", geometry((1, 4, 10, 10), (4, 4, 3, 3),
                                                            padding=1, stride=2), np.float32)
    assert D.supports("direct", "grad_weight", g, np.float32) == runtime.VECTOR_EXTENSIONS
    assert not D.supports("direct", "grad_weight", g, np.float64)
    with pytest.raises(ValueError, match="must be one of"):
        D.supports("fft", "forward", g, np.float32)


# ------------------------------------------------------------------ the geometry


def test_geometry_is_normalised_once():
    g = conv_geometry((2, 6, 11, 9), (4, 3, 3, 2), stride=(2, 1), padding=1, dilation=[1, 2],
                      groups=2)
    assert isinstance(g, ConvGeometry)
    assert g == ConvGeometry(2, 6, 11, 9, 4, 3, 2, (2, 1), (1, 1), (1, 2), 2, 6, 9)
    assert g.x_shape == (2, 6, 11, 9) and g.weight_shape == (4, 3, 3, 2)
    assert g.out_shape == (2, 4, 6, 9)
    assert F.conv2d(np.zeros(g.x_shape), np.zeros(g.weight_shape), stride=(2, 1), padding=1,
                    dilation=[1, 2], groups=2).shape == g.out_shape


def test_grad_x_conv_is_the_transposed_conv():
    g = conv_geometry((2, 6, 11, 9), (4, 6, 3, 5), padding=(1, 3))
    assert g.has_grad_x_conv()
    gx = g.grad_x_conv()
    assert (g.out_h, g.out_w) == (11, 11)
    assert gx == conv_geometry((2, 4, 11, 11), (6, 4, 3, 5), padding=(1, 1))
    assert (gx.out_h, gx.out_w) == (11, 9)
    assert not conv_geometry((2, 6, 11, 9), (4, 6, 3, 5), padding=(1, 5)).has_grad_x_conv()
    assert not conv_geometry((2, 6, 11, 9), (4, 6, 3, 5), stride=2).has_grad_x_conv()
