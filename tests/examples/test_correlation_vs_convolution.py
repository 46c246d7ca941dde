"""examples/correlation_vs_convolution.py: flipping, commutativity and learned kernels."""
import numpy as np

SCRIPT = "correlation_vs_convolution.py"


def correlate_valid(x, k):
    """y[i, j] = sum_{a,b} x[i+a, j+b] k[a, b]."""
    oh, ow = x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1
    return np.array([[sum(x[i + a, j + b] * k[a, b] for a in range(k.shape[0])
                          for b in range(k.shape[1])) for j in range(ow)] for i in range(oh)])


def convolve_full(f, g):
    """(f * g)[i, j] = sum_{m,n} f[m, n] g[i-m, j-n], over every index where both exist."""
    out = np.zeros((f.shape[0] + g.shape[0] - 1, f.shape[1] + g.shape[1] - 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for m in range(f.shape[0]):
                for n in range(f.shape[1]):
                    if 0 <= i - m < g.shape[0] and 0 <= j - n < g.shape[1]:
                        out[i, j] += f[m, n] * g[i - m, j - n]
    return out


def correlate_full(f, g):
    """(f star g)[i, j] = sum_{m,n} f[m, n] g[m - i + gh - 1, n - j + gw - 1] (g slides over f)."""
    gh, gw = g.shape
    out = np.zeros((f.shape[0] + gh - 1, f.shape[1] + gw - 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for m in range(f.shape[0]):
                for n in range(f.shape[1]):
                    a, b = m - i + gh - 1, n - j + gw - 1
                    if 0 <= a < gh and 0 <= b < gw:
                        out[i, j] += f[m, n] * g[a, b]
    return out


def grid(values, shape):
    return np.asarray(values).reshape(shape)


def test_convolution_is_correlation_with_flipped_kernel(run_example, printed):
    out = run_example(SCRIPT)
    X = grid(printed(out, "X"), (4, 4))
    K = grid(printed(out, "K"), (2, 2))
    assert len(set(K.ravel())) == 4, "the kernel must be asymmetric to show anything"
    corr = correlate_valid(X, K)
    conv = convolve_full(X, K)[1:-1, 1:-1]  # the 'valid' part of the full convolution
    assert not np.array_equal(corr, conv)
    assert np.array_equal(printed(out, "correlate2d(X, K)"), corr.ravel())
    assert np.array_equal(printed(out, "convolve2d(X, K)"), conv.ravel())
    assert np.array_equal(printed(out, "K flipped"), np.rot90(K, 2).ravel())
    assert np.array_equal(printed(out, "correlate2d(X, K flipped)"), conv.ravel())
    assert "convolve2d(X, K) == correlate2d(X, K flipped): True" in out


def test_only_convolution_commutes(run_example, printed):
    out = run_example(SCRIPT)
    X = grid(printed(out, "X"), (4, 4))
    K = grid(printed(out, "K"), (2, 2))
    assert np.array_equal(printed(out, "full convolve(X, K)"), convolve_full(X, K).ravel())
    assert np.array_equal(printed(out, "full convolve(K, X)"), convolve_full(K, X).ravel())
    assert np.array_equal(convolve_full(X, K), convolve_full(K, X))
    assert np.array_equal(printed(out, "full correlate(X, K)"), correlate_full(X, K).ravel())
    assert np.array_equal(printed(out, "full correlate(K, X)"), correlate_full(K, X).ravel())
    assert not np.array_equal(correlate_full(X, K), correlate_full(K, X))
    assert "convolution commutes: True" in out
    assert "correlation commutes: False" in out


def test_learned_kernels_are_flips_of_each_other(run_example, printed):
    out = run_example(SCRIPT)
    k_true = grid(printed(out, "kernel that made the targets"), (2, 2))
    w_corr = grid(printed(out, "learned by the correlating layer"), (2, 2))
    w_conv = grid(printed(out, "learned by the convolving layer"), (2, 2))
    assert not np.allclose(k_true, np.rot90(k_true, 2))
    np.testing.assert_allclose(w_corr, k_true, atol=1e-3)
    np.testing.assert_allclose(w_conv, np.rot90(k_true, 2), atol=1e-3)
    np.testing.assert_allclose(printed(out, "convolving layer's kernel flipped"),
                               k_true.ravel(), atol=1e-3)
    assert printed(out, "largest output difference between the two layers")[0] < 1e-6
    assert printed(out, "largest error against the targets")[0] < 1e-6
