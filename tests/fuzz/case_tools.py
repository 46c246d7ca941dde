"""Shared pieces of the fuzz cases: choosers, the contract error, array helpers.

A case is built from a *chooser*, an object with ``int(lo, hi)``, ``choice(seq)`` and
``bool()``, so the same generators run under hypothesis (``HypothesisChooser``, which
shrinks), over a numpy seed (``RandomChooser``) and under atheris
(``atheris_functional.py``, which mutates raw bytes).
"""
import numpy as np

# dtypes a user might pass by mistake (all must be refused with TypeError)
BAD_DTYPES = ("int8", "int32", "int64", "uint8", "float16", "complex64", "complex128",
              "bool", "object", "U3", "datetime64[s]", [("a", "f4"), ("b", "f4")])


class ContractViolation(AssertionError):
    pass


class HypothesisChooser:
    """Chooser drawing from a hypothesis ``data`` object (``st.data()``)."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self._st, self._data = st, data

    def int(self, lo, hi):
        return self._data.draw(self._st.integers(lo, hi))

    def choice(self, seq):
        return seq[self._data.draw(self._st.integers(0, len(seq) - 1))]

    def bool(self):
        return self._data.draw(self._st.booleans())


class RandomChooser:
    """Chooser over a numpy Generator (for scripts and soak runs)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, seq):
        return seq[int(self.rng.integers(0, len(seq)))]

    def bool(self):
        return bool(self.rng.integers(0, 2))


# --------------------------------------------------------------------------- array helpers

def _values(c, shape, dtype, rng):
    kind = c.choice(("normal", "normal", "normal", "ints", "nan", "inf", "large", "zeros"))
    if kind == "ints":  # exact in any summation order
        a = rng.integers(-3, 4, shape).astype(dtype)
    elif kind == "zeros":
        a = np.zeros(shape, dtype)
    elif kind == "large":
        a = (rng.standard_normal(shape) * (3e38 if dtype == np.float32 else 1e300)).astype(dtype)
    else:
        a = rng.standard_normal(shape).astype(dtype)
        if kind in ("nan", "inf") and a.size:
            idx = rng.integers(0, a.size, max(1, a.size // 5))
            a.flat[idx] = np.nan if kind == "nan" else rng.choice([np.inf, -np.inf], idx.size)
    return a, kind


def _relayout(c, a, keep_writeable=False):
    """The same values in a random memory layout (all must be accepted).

    keep_writeable: for arrays a call writes into ("readonly" then becomes "c").
    """
    how = c.choice(("c", "c", "fortran", "strided", "byteswap", "readonly", "negative"))
    if how == "readonly" and keep_writeable:
        how = "c"
    if how == "fortran" and a.ndim:  # (asfortranarray makes a 0-d array 1-d)
        a = np.asfortranarray(a)
    elif how == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (a.shape[-1] * 2,), a.dtype)
        big[..., ::2] = a
        a = big[..., ::2]
    elif how == "byteswap":
        a = a.astype(a.dtype.newbyteorder())
    elif how == "readonly":
        a = a.copy()
        a.flags.writeable = False
    elif how == "negative" and a.ndim:
        a = np.flip(np.flip(a, -1).copy(), -1)  # negative last-axis stride, same values
    return a, how


def _bad_dtype(c, a):
    dt = c.choice(BAD_DTYPES)
    try:
        return a.astype(dt) if np.dtype(dt).kind not in "OUM" or not a.size else \
            np.empty(a.shape, dt)
    except (TypeError, ValueError):
        return np.empty(a.shape, dt)


def _assert_close(what, g, r, atol, nonfinite):
    """g == r within atol (broadcastable) on r's finite entries; same finite/NaN pattern."""
    g64, r64 = g.astype(np.float64), r.astype(np.float64)
    finite = np.isfinite(r64)
    if not np.array_equal(np.isfinite(g64), finite):
        raise ContractViolation(f"{what}: non-finite entries differ from the reference at "
                                f"{np.argwhere(np.isfinite(g64) != finite)[:3].tolist()}")
    if not nonfinite and not np.array_equal(np.isnan(g64), np.isnan(r64)):
        raise ContractViolation(f"{what}: NaN pattern differs from the reference")
    err = np.abs(g64 - r64)
    bad = finite & ~(err <= np.broadcast_to(atol, r64.shape))
    if bad.any():
        at = tuple(np.argwhere(bad)[0])
        raise ContractViolation(f"{what} differs from the reference by {err[at]:.3g} at {at} "
                                f"(got {g64[at]!r}, reference {r64[at]!r}, allowed "
                                f"{np.broadcast_to(atol, r64.shape)[at]:.3g})")
