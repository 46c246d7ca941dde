"""Two-dimensional cross-correlation, the operation a CNN "convolution" layer computes.

A kernel K slides over the input X; at every position the overlapping entries are
multiplied elementwise and summed into one output entry.  This script computes the
textbook example with cnnframe, spells out one entry by hand, and checks the
output-size formula (with padding and stride) against what conv2d actually returns.

Run:  python examples/corr2d.py
"""
import numpy as np

from cnnframe.functional import conv2d, correlate2d


def show(name, value):
    """Print `name =` and the array below it, then a blank line."""
    print(f"{name} =")
    print(np.array2string(np.asarray(value), precision=4, suppress_small=True))
    print()


def output_size(n, k, padding=0, stride=1):
    """floor((n + 2*padding - k) / stride) + 1 along one axis."""
    return (n + 2 * padding - k) // stride + 1


def main():
    # 1. The worked example: a 3x3 input and a 2x2 kernel.
    X = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=np.float64)
    K = np.array([[0, 1], [2, 3]], dtype=np.float64)
    Y = correlate2d(X, K)
    show("X", X)
    show("K", K)
    show("Y = corr2d(X, K)", Y)

    # 2. One entry by hand: the top-left 2x2 window of X times K, summed.
    window = X[0:2, 0:2]
    terms = " + ".join(f"{a:g}*{b:g}" for a, b in zip(window.ravel(), K.ravel()))
    print(f"Y[0, 0] = {terms} = {np.sum(window * K):g}")
    print()

    # 3. Without padding the output shrinks by the kernel size minus one.
    print(f"output shape = ({X.shape[0]} - {K.shape[0]} + 1) x ({X.shape[1]} - {K.shape[1]} + 1)"
          f" = {Y.shape[0]} x {Y.shape[1]}")
    print()

    # 4. The general formula, checked against the shape conv2d really produces.
    #    conv2d works on batches: (N, C, H, W) inputs and (F, C, KH, KW) kernels.
    print("output size = floor((n + 2*padding - k) / stride) + 1")
    print(f"{'n':>4} {'k':>3} {'padding':>8} {'stride':>7} {'formula':>8} {'conv2d':>7}")
    cases = [(3, 2, 0, 1), (4, 3, 1, 1), (7, 3, 0, 2), (8, 3, 1, 2), (28, 5, 2, 3), (32, 5, 0, 1)]
    for n, k, p, s in cases:
        y = conv2d(np.zeros((1, 1, n, n)), np.zeros((1, 1, k, k)), stride=s, padding=p)
        print(f"{n:>4} {k:>3} {p:>8} {s:>7} {output_size(n, k, p, s):>8} {y.shape[-1]:>7}")
    print()

    # 5. Padding adds a border of zeros, stride skips positions: X, K with padding 1, stride 2.
    Y_ps = conv2d(X[None, None], K[None, None], padding=1, stride=2)[0, 0]
    show("corr2d(X, K, padding=1, stride=2)", Y_ps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
