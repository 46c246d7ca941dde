"""Hypothesis strategies for valid conv/pool geometries, shared by the functional tests."""
import numpy as np
from hypothesis import strategies as st


@st.composite
def conv_geometries(draw, max_batch=3, max_size=9):
    """(x_shape, w_shape, kwargs) for a valid conv2d call; ints or (h, w) pairs."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    # input just big enough for at least one output position, up to max_size more
    h = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, max_size))
    w = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, max_size))
    n = draw(st.integers(1, max_batch))
    as_pair = draw(st.booleans())
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    if not as_pair and sh == sw and ph == pw and dh == dw:
        kwargs.update(stride=sh, padding=ph, dilation=dh)
    return (n, cin, h, w), (cout, cin // groups, kh, kw), kwargs


@st.composite
def pool_geometries(draw, max_batch=3, max_size=9):
    """(x_shape, kwargs) for a valid max/avg pool call."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    h = max(1, kh - 2 * ph) + draw(st.integers(0, max_size))
    w = max(1, kw - 2 * pw) + draw(st.integers(0, max_size))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, 3)), h, w)
    return shape, dict(kernel_size=(kh, kw), stride=stride, padding=(ph, pw))


def distinct_values(rng, shape, dtype):
    """Values with no ties (a shuffled grid), so max-pool has a unique argmax everywhere."""
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size / 2) / max(size, 1)
    return values.reshape(shape).astype(dtype)
