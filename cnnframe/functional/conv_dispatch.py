"""Which algorithm conv2d and conv2d_backward run, per pass and per instruction set.

conv2d has three algorithms: the direct kernel (functional/_direct.py), Winograd
F(2x2, 3x3) or F(4x4, 3x3) ("winograd2", "winograd4") and im2col + GEMM; depthwise convs
(groups == C > 1) a fourth, the per-plane "depthwise" kernel (functional/depthwise.py).  Each pass
("forward", "grad_x", "grad_weight") picks one:

- explicitly, with conv2d's and conv2d_backward's ``algorithm`` argument, which
  `resolve` checks against what the algorithm can compute (`unsupported`);
- or, with ``algorithm="auto"``, from the table of the active instruction set
  (`TABLES`, `choose_algorithm`): its rows are read in order and the first one whose
  conditions hold, and whose algorithm can compute the conv, wins; im2col + GEMM,
  which computes everything, takes the rest.

grad_x is a stride-1 conv of grad_y with the flipped, transposed kernel (padding
K - 1 - p, `ConvGeometry.grad_x_conv`), so its rows are read on that conv's geometry:
"C" and "F" are then the forward's F and C, and the output map is x's.

Every row quotes the measurement behind it: benchmarks/bench_conv_algos.py (float32, 2
threads, batch 128 or as many images as make ~2.5 GFLOP, interleaved medians, ms
<this row's algorithm> / <the best other>, forward | grad_x), unless it says otherwise.
That benchmark prints each algorithm's time next to what "auto" picks on the machine it
runs on; re-measure with it on a new CPU (crossovers move with the CPU).  Rows may hold
a batch condition (``min_batch``, ``max_batch``); none uses one yet.
"""
import functools
from dataclasses import dataclass

import numpy as np

from cnnframe.functional.depthwise import depthwise_applies
from cnnframe_ext import runtime as _runtime

PASSES = ("forward", "grad_x", "grad_weight")
# What ``algorithm=`` accepts: "winograd" is F(4x4, 3x3) unless F(2x2, 3x3)'s tiles fit
# the output more closely; "winograd2" / "winograd4" force one of them.
# "depthwise" is the per-plane kernel of depthwise convs (groups == C > 1, any multiplier).
ALGORITHMS = ("auto", "direct", "winograd", "winograd2", "winograd4", "im2col", "depthwise")


@dataclass(frozen=True)
class Rule:
    """One row of a dispatch table: `algorithm` where every given condition holds.

    Conditions (None or 0: no condition), on the geometry of the conv the pass runs:
    kernel (KH, KW); channels per group, C = input, F = output; pairs = C * F per group;
    taps = KH * KW; pixels = output pixels OH * OW; vector_fill = pixels / (pixels
    rounded up to 16, the direct kernel's 64-byte float32 vectors); tile_fill, on
    Winograd rows only = pixels / the pixels of the whole m x m tiles covering the output
    (the default 1.0 takes exact tilings only; below it the last tiles are ragged and part
    of their work is thrown away); dtype; batch N.
    `measured` quotes the benchmark figures behind the row.
    """
    algorithm: str
    measured: str
    kernel: tuple = None
    min_channels: int = 0          # min(C, F)
    max_in_channels: int = None    # C
    max_out_channels: int = None   # F
    min_pairs: int = 0
    max_pairs: int = None
    min_taps: int = 0
    min_pixels: int = 0
    max_pixels: int = None
    min_vector_fill: float = 0.0
    min_tile_fill: float = 1.0
    dtype: str = None
    min_batch: int = 0
    max_batch: int = None

    def holds(self, g, dtype):
        """True if every condition of this row holds for geometry `g` and `dtype`."""
        c, f = g.c // g.groups, g.f // g.groups
        pixels = g.out_h * g.out_w

        def within(value, low, high):
            return value >= low and (high is None or value <= high)
        return ((self.kernel is None or (g.kh, g.kw) == self.kernel)
                and min(c, f) >= self.min_channels
                and within(c, 0, self.max_in_channels) and within(f, 0, self.max_out_channels)
                and within(c * f, self.min_pairs, self.max_pairs)
                and g.kh * g.kw >= self.min_taps
                and within(pixels, self.min_pixels, self.max_pixels)
                and pixels >= self.min_vector_fill * -(-pixels // 16) * 16
                and (not self.algorithm.startswith("winograd")
                     or _tile_fill(g, int(self.algorithm[-1])) >= self.min_tile_fill)
                and (self.dtype is None or np.dtype(dtype) == np.dtype(self.dtype))
                and within(g.n, self.min_batch, self.max_batch))


# Conditions several tables share.
# The direct kernel computes 16-float blocks of pixels; below 3/4 of them filled it lost
# (AVX-512: 3x3 256->256 on 2x2 maps 1.86x, 3x3 1.07x im2col's time; 4x4 0.35-0.83x,
# 5x5 0.88x, 6x6 0.89x, 7x7 0.39-0.79x still won).  It runs float32 only where measured.
DIRECT = dict(min_vector_fill=0.75, dtype="float32")
# Winograd needs enough channels for its GEMMs (thinner layers, an RGB input, leave them
# too narrow) and, per tile size, enough tiles: F(4x4) from 8x8 maps, F(2x2) from 16x16.
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_PIXELS = 256
WINOGRAD43_MIN_PIXELS = 64
WINOGRAD_FORWARD = (
    Rule("winograd4", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS,
         min_pixels=WINOGRAD43_MIN_PIXELS,
         measured="F(4x4, 3x3): 36 multiplies per 16 outputs where F(2x2) spends 64. AVX2, "
                  "ms F(2x2) / F(4x4), min of 7 on the loaded machine: 28x28 32->64 "
                  "72.2/61.5 | 78.1/56.1, 128->64 42.6/34.1 | 39.0/23.2, 256->256 "
                  "263.4/240.1; 32x32 32->64 57.5/49.4, 256->256 375.1/216.0"),
    Rule("winograd2", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS,
         min_pixels=WINOGRAD_MIN_PIXELS,
         measured="ms im2col / F(2x2) (batch 128): 32->32 on 32x32 forward 23.2/13.1, "
                  "64->64 on 16x16 17.8/11.9"),
)
# The weight gradient's Winograd: the fastest for every 3x3 layer wide enough for it,
# except very wide layers on small maps (ms F(2x2) / F(4x4) / im2col / direct, AVX-512).
GRAD_WEIGHT_WINOGRAD = (
    Rule("im2col", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, max_pixels=256,
         min_pairs=32768,
         measured="wide on maps <= 16x16: 128->256 8x8 13.9/18.5/12.5, "
                  "256->256 16x16 26.0/41.5/21.5"),
    Rule("winograd4", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=1024,
         measured="32x32: 32->32 26.9/21.5/40.7/42.6, 64->64 14.6/9.6/18.2/33.6 (33 images); "
                  "F(4x4) takes 0.91-1.24x F(2x2)'s time on maps up to 28x28"),
    Rule("winograd2", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=16,
         measured="8x8: 32->64 2.2/2.4/2.7/4.9, 64->128 6.2/7.1/7.4/20.6, "
                  "128->128 11.0/13.6/14.0/30.0; 16x16: 32->64 6.0/6.2/8.1/11.2, "
                  "64->64 9.7/9.9/14.7/31.0"),
)

# Ragged Winograd tiles (output sizes not multiples of the tile: 31x31, 15x15 and 7x7 maps
# after a 2x2 conv or 3x3 pooling), measured on AVX2 only; the AVX-512 table keeps to exact
# tilings (its rows' default min_tile_fill=1.0) until measured there.
# ms of the best ragged Winograd / the best exact-fit algorithm, forward | grad_x, quiet
# machine, batch 128 (31x31: 64), medians of 5, 2 threads.
AVX2_RAGGED_WINOGRAD43 = Rule(
    "winograd4", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=196,
    min_tile_fill=0.85,
    measured="F(4x4) on 15x15 (fill 0.88) and 31x31 (0.94) / direct: 15x15 64->64 16.1/19.0 "
             "| 16.0/18.8, 64->128 31.6/44.2 | 36.1/51.2, 128->128 57.1/90.9 | 52.9/96.0; "
             "31x31 24->64 13.7/16.9 | 11.8/14.5, 64->128 40.8/84.9 | 34.3/83.9, "
             "128->128 51.3/138.4 | 51.4/147.2")
AVX2_RAGGED_WINOGRAD2_WIDE = Rule(
    "winograd2", kernel=(3, 3), min_pairs=16384, min_pixels=49, max_pixels=64,
    min_tile_fill=0.75,
    measured="F(2x2), 128->128 on 7x7 (fill 0.77) / direct 17.4/22.7 | 16.3/21.6 (8x8, exact: "
             "14.2/16.9 | 14.2/17.7); 64->128 7x7 10.9/10.8: no")

AVX512_FORWARD = (
    Rule("direct", kernel=(1, 1), max_pixels=256, min_vector_fill=1.0, dtype="float32",
         measured="1x1 on maps of 16..256 pixels: 0.29-0.86x (16->32 8x8 1.03x)"),
    Rule("im2col", kernel=(1, 1),
         measured="1x1, direct / GEMM: 5x5 maps 1.02x, 32x32 0.6-1.14x, 56x56 0.9-1.45x, "
                  "256->256 2x2 1.86x"),
    Rule("direct", kernel=(3, 3), max_out_channels=16, **DIRECT,
         measured="3x3 with F <= 16 (Winograd's GEMMs narrow): 16->16 7x7 0.18/0.45"),
    Rule("direct", kernel=(3, 3), max_pixels=256, **DIRECT,
         measured="3x3 on 4x4..16x16, 16..256 channels: 0.37-0.94x | 0.35-1.08x Winograd's "
                  "time; 32->64 16x16 4.5/6.3 | 4.9/5.2, 64->128 8x8 4.8/9.2 | 4.3/7.0"),
    Rule("direct", kernel=(3, 3), max_pixels=784, max_pairs=16384, **DIRECT,
         measured="3x3 28x28, C*F <= 16384: 0.54-1.09x | 0.54-1.13x (64->64 11.2/12.1, "
                  "128->128 21.3/23.0); 128->256 1.00x | 1.00x, 256->256 1.13x | 1.10x"),
    Rule("direct", kernel=(3, 3), max_pairs=2048, **DIRECT,
         measured="3x3 32x32, C*F <= 2048: 0.67-1.06x | 0.71-1.00x (32->32 12.7/16.8 | "
                  "10.7/11.6); wider 1.10-1.37x | 1.02-1.25x -> Winograd"),
    *WINOGRAD_FORWARD,
    Rule("direct", **DIRECT,
         measured="5x5 and 7x7, 8x8..56x56, 3..64 channels in: 0.29-0.75x im2col's time "
                  "(32->32 5x5 32x32 33/70); 1x3, 3x1, 1x7, 7x1, 3x5 0.63-0.75x; 3x3 outside "
                  "Winograd: 3->32 32x32 1.2/3.6, 3->128 32x32 5.7/8.0, 64->128 15x15 "
                  "11.2/14.4"),
)

AVX2_FORWARD = (
    Rule("im2col", kernel=(1, 1),
         measured="1x1 on 16..256 pixels, 16..128 channels: direct 0.92-1.72x | 1.02-1.68x "
                  "GEMM's time (16->32 8x8 0.24/0.26 | 0.26/0.19, 128->128 16x16 9.8/5.7 | "
                  "10.0/6.0)"),
    Rule("direct", kernel=(3, 3), max_out_channels=16, **DIRECT,
         measured="3x3 with F <= 16: as on AVX-512 (Winograd's GEMMs narrow)"),
    AVX2_RAGGED_WINOGRAD2_WIDE,
    Rule("direct", kernel=(3, 3), max_pixels=64, **DIRECT,
         measured="3x3 on 4x4 and 8x8, 16..256 channels: 0.56-0.89x | 0.52-1.14x Winograd's "
                  "time; 64->128 8x8 9.5/11.5 | 7.8/8.1, 256->256 4x4 17.8/29.1 | 19.0/33.8"),
    Rule("direct", kernel=(3, 3), max_pixels=256, max_pairs=2048, **DIRECT,
         measured="3x3 16x16, C*F <= 2048: 0.70-0.87x | 0.73-0.88x (32->64 9.2/10.6 | "
                  "10.2/11.6); 64->64 1.23x | 1.44x, 64->128 1.56x | 1.25x, 128->128 1.23x | "
                  "1.14x -> Winograd"),
    *WINOGRAD_FORWARD,
    AVX2_RAGGED_WINOGRAD43,
    Rule("direct", **DIRECT,
         measured="5x5 and 7x7: 32->32 5x5 32x32 11.9/19.0, 64->64 5x5 16x16 10.1/14.8, "
                  "16->16 7x7 28x28 12.4/28.4; 3x3 outside Winograd: 3->32 32x32 1.2/2.9 "
                  "(3x3 on 28x28 and 32x32, 32->32 and wider: 1.04-3.5x -> Winograd)"),
)

# The direct weight gradient where it measured faster: few input channels, or kernels of
# 25+ taps on up to 4096 channel pairs; not 3x3 with 32+ channels.
AVX512_GRAD_WEIGHT = (
    *GRAD_WEIGHT_WINOGRAD,
    Rule("direct", max_in_channels=4, dtype="float32",
         measured="batch 64-128, ms direct / im2col: 3->32 3x3 32x32 3.5/7.0, 5x5 2.2/6.5"),
    Rule("direct", min_taps=25, max_pairs=4096, dtype="float32",
         measured="ms direct / im2col: 32->32 5x5 32x32 41/95, 64->64 5x5 16x16 26/29, "
                  "16->16 7x7 56x56 37/72 (3x3 64->128 8x8 23/12: no)"),
)
AVX2_GRAD_WEIGHT = (
    GRAD_WEIGHT_WINOGRAD[0],
    Rule("winograd4", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=256,
         measured="AVX2, from 16x16 (AVX-512: from 32x32): ms F(4x4) / F(2x2), quiet machine, "
                  "batch 128, median of 5: 16x16 24->64 5.2/7.2, 64->64 13.5/17.0, 64->128 "
                  "21.8/28.9, 128->128 45.3/54.3; 32x32 64->64 42.8/61.3, 128->128 "
                  "122.9/177.7 (8x8: F(2x2) 0.77-0.86x F(4x4)'s time)"),
    Rule("winograd4", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=196,
         min_tile_fill=0.85,
         measured="ragged F(4x4) / the best exact-fit algorithm (im2col), batch 128 (31x31: "
                  "64): 15x15 64->64 17.2/31.8, 64->128 36.2/59.5, 128->128 50.8/88.9; 31x31 "
                  "24->64 15.8/35.3, 64->128 27.6/71.4"),
    Rule("winograd2", kernel=(3, 3), min_channels=WINOGRAD_MIN_CHANNELS, min_pixels=16,
         min_tile_fill=0.75,
         measured="ragged F(2x2) / im2col: 7x7 24->64 2.5/2.7, 64->128 12.5/12.9, 128->128 "
                  "21.6/30.7 (F(4x4) 9.0/9.4 F(2x2) on 64->64)"),
    *GRAD_WEIGHT_WINOGRAD[1:],
    Rule("direct", max_in_channels=4, dtype="float32",
         measured="ms direct / conv2d_backward's other choice: 3->32 3x3 32x32 1.5/3.9"),
    Rule("direct", min_taps=25, max_pairs=4096, dtype="float32",
         measured="ms direct / other: 32->32 5x5 32x32 13.0/18.5, 64->64 5x5 16x16 13.6/14.3, "
                  "16->16 7x7 28x28 12.8/30.0 (3x3 64->128 8x8 12.6/7.6: no)"),
)

# One table per instruction set: {pass: rows}.  grad_x reads the forward rows on its
# own conv's geometry (the measurements quote forward | grad_x).
# Depthwise convs (groups == C > 1) first, on every instruction set: im2col runs them as C
# tiny GEMMs over KH*KW copies of each plane; the per-plane kernel makes one pass over
# memory, which is what bounds a depthwise layer (AVX2, 2 threads, loaded machine, ms
# depthwise / im2col: 64 ch 3x3 32x32 batch 64 forward 33.2/139.8, 128 ch 3x3 stride 2
# 16x16 29.1/43.9, 32 ch 5x5 32x32 60.0/266.1, batch 1 64 ch 0.15/0.71).
DEPTHWISE = (Rule("depthwise", measured="forward 64 ch 3x3 32x32 batch 64: 33.2 ms vs "
                                        "im2col 139.8 ms (AVX2, 2 threads)"),)

TABLES = {
    "avx512": {"forward": DEPTHWISE + AVX512_FORWARD, "grad_x": DEPTHWISE + AVX512_FORWARD,
               "grad_weight": DEPTHWISE + AVX512_GRAD_WEIGHT},
    "avx2": {"forward": DEPTHWISE + AVX2_FORWARD, "grad_x": DEPTHWISE + AVX2_FORWARD,
             "grad_weight": DEPTHWISE + AVX2_GRAD_WEIGHT},
    # The generic path's one (2, 1) micro-kernel never beat BLAS (no FMA on x86-64): ms
    # direct / im2col 32->32 5x5 32x32 25.6/18.9, 64->64 5x5 16x16 28.5/14.5 weight
    # gradient; 3x3, ms direct / best other (min of 7, loaded machine): forward 32->64
    # 16x16 120.0/50.7, 64->128 32x32 349.7/62.7, weight gradient 32->64 32x32
    # 251.3/81.5; so no direct rows.
    "generic": {"forward": DEPTHWISE + WINOGRAD_FORWARD, "grad_x": DEPTHWISE + WINOGRAD_FORWARD,
                "grad_weight": DEPTHWISE + GRAD_WEIGHT_WINOGRAD},
}


# The direct kernel's micro-kernels per instruction set (cnnframe_ext/src/direct.h): FB
# output channels x V vectors of 64 bytes of pixels, in order of preference among equal
# padded work (functional/_direct.py picks one per conv).  AVX-512 (measured on one core:
# (8, 2) and (16, 1) 88-94% of peak on 8x8 and 32x32 maps; (4, 4) up to 5% lower; FB = 6,
# 12, 24 only where they divide F).  AVX2 (12 or 8 accumulators of 8 floats): see
# TILE_SPEED.  (2, 1) runs everywhere; it is the only one of the generic path.
TILES = {"avx512": ((16, 1), (8, 2), (4, 4), (12, 2), (6, 4), (24, 1), (2, 1)),
         "avx2": ((6, 1), (4, 1), (2, 1)),
         "generic": ((2, 1),)}
# Speed per unit of padded work relative to the others, where it differs: on AVX2, (4, 1)
# (8 accumulators) measured ~10% slower than (6, 1) at equal work (2 threads, ms (6, 1) /
# (4, 1): 128->128 3x3 8x8 9.4/10.3, 64->64 16x16 9.0/10.0), so (6, 1) takes F = 64 and
# 128 despite 3% padding and (4, 1) F = 16 and 32 (3->32 3x3 32x32 1.48/1.23).
TILE_SPEED = {(4, 1): 0.9}


def tiles(isa=None):
    """The direct kernel's micro-kernels on `isa` (default: the active instruction set)."""
    return TILES[isa or _runtime.active_isa()]


def tile_grid(g, tile):
    """(tile rows, tile columns) of Winograd F(tile x tile) covering the output of conv `g`:
    the last ones may be ragged (see cnnframe_ext/winograd.pyx)."""
    return -(-g.out_h // tile), -(-g.out_w // tile)


def _tile_fill(g, tile):
    """Output pixels / pixels of the whole tile x tile tiles that cover them."""
    rows, cols = tile_grid(g, tile)
    return g.out_h * g.out_w / (rows * cols * tile * tile)


def _winograd_tile(g):
    """The Winograd tile of ``algorithm="winograd"``: 4, unless F(2x2)'s tiles fit the
    output more closely (sizes 2 mod 4, or 1 and 5)."""
    return 4 if _tile_fill(g, 4) >= _tile_fill(g, 2) else 2


def unsupported(algorithm, pass_, g, dtype):
    """Why `algorithm` cannot compute pass `pass_` of the conv `g` (a sentence), or None.

    algorithm is one of "direct", "winograd2", "winograd4", "im2col".  im2col computes
    everything.  grad_x by the direct kernel or Winograd is a stride-1 conv of grad_y
    (`ConvGeometry.grad_x_conv`): it needs stride 1, dilation 1 and padding <= K - 1.
    """
    if algorithm == "im2col":
        return None
    if algorithm == "depthwise":
        if depthwise_applies((g.n, g.c, g.h, g.w), g.weight_shape, g.groups):
            return None
        return (f"the depthwise kernel needs one input channel per group (groups == C > 1), "
                f"got groups {g.groups} for {g.c} input channels")
    if pass_ == "grad_x":
        if not g.has_grad_x_conv():
            return (f"{algorithm} computes grad_x as a stride-1 conv of grad_y, which needs "
                    f"stride 1, dilation 1 and padding at most kernel size - 1, got stride "
                    f"{g.stride}, dilation {g.dilation}, padding {g.padding}, kernel {g.kernel}")
        g = g.grad_x_conv()
    if algorithm == "direct":
        if not _runtime.VECTOR_EXTENSIONS:
            return "the kernels were built without vector extensions: no direct kernel"
        if g.stride != (1, 1) or g.dilation != (1, 1) or g.groups != 1:
            return (f"the direct kernel needs stride 1, dilation 1 and groups 1, got stride "
                    f"{g.stride}, dilation {g.dilation}, groups {g.groups}")
        if pass_ == "grad_weight" and np.dtype(dtype) != np.float32:
            return f"the direct weight gradient is float32 only, got {np.dtype(dtype)}"
        return None
    if g.kernel != (3, 3) or g.stride != (1, 1) or g.dilation != (1, 1):
        return (f"Winograd needs a 3x3 kernel, stride 1 and dilation 1, got kernel "
                f"{g.kernel}, stride {g.stride}, dilation {g.dilation}")
    return None


def supports(algorithm, pass_, g, dtype):
    """True if `algorithm` (any of ALGORITHMS) can compute pass `pass_` of the conv `g`."""
    _check_name(algorithm, "algorithm", "supports")
    try:
        resolve(algorithm, pass_, g, dtype)
    except ValueError:
        return False
    return True


def choose_algorithm(pass_, g, dtype, isa=None):
    """The algorithm "auto" takes for one pass: "direct", "winograd2", "winograd4" or "im2col".

    Parameters
    ----------
    pass_ : {"forward", "grad_x", "grad_weight"}
    g : ConvGeometry
        The forward conv's geometry (grad_x reads the rows on `g.grad_x_conv()`); its
        batch size g.n is there for rows with a batch condition.
    dtype : float32 or float64
    isa : {"avx512", "avx2", "generic"}, optional
        Whose table to read; default the active instruction set (cnnframe.use_isa).
    """
    return _choose(pass_, g, np.dtype(dtype), isa or _runtime.active_isa())


# A layer calls conv2d with the same few geometries step after step: reading the table
# costs tens of microseconds, a cached answer one.
@functools.lru_cache(maxsize=4096)
def _choose(pass_, g, dtype, isa):
    rows_g = g.grad_x_conv() if pass_ == "grad_x" and g.has_grad_x_conv() else g
    for rule in TABLES[isa][pass_]:
        if rule.holds(rows_g, dtype) and unsupported(rule.algorithm, pass_, g, dtype) is None:
            return rule.algorithm
    return "im2col"


def _check_name(algorithm, where, fn):
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"{fn}: {where} must be one of {', '.join(map(repr, ALGORITHMS))}, "
                         f"got {algorithm!r}")


def resolve(algorithm, pass_, g, dtype, fn="conv2d", where="algorithm", isa=None):
    """The algorithm pass `pass_` runs for the ``algorithm`` argument `algorithm`.

    "auto" reads the table (`choose_algorithm`); "winograd" takes F(4x4) unless F(2x2)'s
    tiles cover the output (x for grad_x) with less waste (`_winograd_tile`).

    Raises
    ------
    ValueError
        Naming `where` (the argument) for an unknown name or an algorithm that cannot
        compute this pass of this conv, and why.
    """
    _check_name(algorithm, where, fn)
    if algorithm == "auto":
        return choose_algorithm(pass_, g, dtype, isa)
    chosen = algorithm
    if algorithm == "winograd":
        tile = _winograd_tile(g.grad_x_conv() if pass_ == "grad_x" and g.has_grad_x_conv()
                              else g)
        chosen = f"winograd{tile}"
    why = unsupported(chosen, pass_, g, dtype)
    if why:
        raise ValueError(f"{fn}: {where}={algorithm!r} cannot compute the {pass_} pass of this "
                         f"conv (x {g.x_shape}, weight {g.weight_shape}): {why}; "
                         f"algorithm='auto' chooses one that can")
    return chosen


def backward_algorithms(algorithm, g, dtype, need_grad_x, fn="conv2d_backward", isa=None, *,
                        need_grad_weight=True):
    """(grad_x's algorithm or None, grad_weight's or None) for conv2d_backward's ``algorithm``.

    `algorithm` is a name for both gradients, or a dict {"grad_x": name,
    "grad_weight": name} (a missing key means "auto").  With "auto", grad_weight takes
    im2col whenever grad_x does: one column matrix then serves both.
    """
    if isinstance(algorithm, dict):
        unknown = set(algorithm) - {"grad_x", "grad_weight"}
        if unknown:
            raise ValueError(f"{fn}: algorithm has unknown keys {sorted(map(str, unknown))}; "
                             "the valid ones are 'grad_x' and 'grad_weight'")
        names = {p: algorithm.get(p, "auto") for p in ("grad_x", "grad_weight")}
        where = {p: f"algorithm[{p!r}]" for p in names}
    else:
        names = {"grad_x": algorithm, "grad_weight": algorithm}
        where = {"grad_x": "algorithm", "grad_weight": "algorithm"}
    for p in names:
        _check_name(names[p], where[p], fn)
    grad_x = (resolve(names["grad_x"], "grad_x", g, dtype, fn, where["grad_x"], isa)
              if need_grad_x else None)
    if not need_grad_weight:
        return grad_x, None
    if names["grad_weight"] == "auto" and grad_x == "im2col":
        return grad_x, "im2col"
    return grad_x, resolve(names["grad_weight"], "grad_weight", g, dtype, fn,
                           where["grad_weight"], isa)
