"""Cross-correlation versus true convolution.

What CNN layers call "convolution" is cross-correlation: the kernel slides over the
image as it is.  True (mathematical) convolution first flips the kernel in both
axes.  This script shows that
  1. convolve2d(X, K) equals correlate2d(X, K flipped in both axes);
  2. true convolution commutes (X * K == K * X, in 'full' mode), cross-correlation
     does not;
  3. for a layer that learns its kernel the difference does not matter: trained on
     the same data, a correlating layer and a convolving layer reach the same outputs,
     and their kernels are flips of each other.

Run:  python examples/correlation_vs_convolution.py
"""
import numpy as np

from cnnframe.functional import conv2d, conv2d_backward, convolve2d, correlate2d


def show(name, value):
    """Print `name =` and the array below it, then a blank line."""
    print(f"{name} =")
    print(np.array2string(np.asarray(value), precision=4, suppress_small=True))
    print()


def zero_pad(a, ph, pw):
    """a with ph rows of zeros above and below and pw columns left and right."""
    return np.pad(a, ((ph, ph), (pw, pw)))


def full_convolve(a, b):
    """'full' true convolution: every overlap of a and b, output (ah + bh - 1, aw + bw - 1)."""
    return convolve2d(zero_pad(a, b.shape[0] - 1, b.shape[1] - 1), b)


def full_correlate(a, b):
    """'full' cross-correlation, same output size as full_convolve."""
    return correlate2d(zero_pad(a, b.shape[0] - 1, b.shape[1] - 1), b)


def train_kernel(x, y, flip, steps=200, lr=0.2, seed=0):
    """Fit a 2x2 kernel w so that layer(x) matches y by gradient descent on mean squared error.

    flip=False: the layer cross-correlates, layer(x) = conv2d(x, w).
    flip=True:  the layer truly convolves, layer(x) = conv2d(x, w flipped).
    Both layers start from the same random kernel.
    """
    w = np.random.default_rng(seed).normal(size=(1, 1, 2, 2))
    for _ in range(steps):
        w_used = w[:, :, ::-1, ::-1].copy() if flip else w
        y_hat = conv2d(x, w_used)
        _, grad_used, _ = conv2d_backward(x, w_used, 2 * (y_hat - y) / y.size, 1, 0, 1, 1,
                                          need_grad_x=False)
        # Flipping is its own inverse, so the gradient flips back the same way.
        w -= lr * (grad_used[:, :, ::-1, ::-1] if flip else grad_used)
    w_used = w[:, :, ::-1, ::-1] if flip else w
    return w[0, 0], conv2d(x, np.ascontiguousarray(w_used))


def main():
    X = np.array([[1, 2, 0, 1], [0, 1, 3, 2], [2, 0, 1, 1], [1, 3, 0, 2]], dtype=np.float64)
    K = np.array([[1, 2], [3, 4]], dtype=np.float64)
    show("X", X)
    show("K", K)

    # 1. Convolution is correlation with the kernel flipped both ways.
    K_flipped = K[::-1, ::-1]
    show("correlate2d(X, K)", correlate2d(X, K))
    show("convolve2d(X, K)", convolve2d(X, K))
    show("K flipped", K_flipped)
    show("correlate2d(X, K flipped)", correlate2d(X, K_flipped))
    same = np.array_equal(convolve2d(X, K), correlate2d(X, K_flipped))
    print(f"convolve2d(X, K) == correlate2d(X, K flipped): {same}")
    print()

    # 2. Commutativity, in 'full' mode so that neither argument has to fit inside the other.
    show("full convolve(X, K)", full_convolve(X, K))
    show("full convolve(K, X)", full_convolve(K, X))
    show("full correlate(X, K)", full_correlate(X, K))
    show("full correlate(K, X)", full_correlate(K, X))
    print(f"convolution commutes: {np.array_equal(full_convolve(X, K), full_convolve(K, X))}")
    print(f"correlation commutes: {np.array_equal(full_correlate(X, K), full_correlate(K, X))}")
    print("(correlate(K, X) is correlate(X, K) rotated by 180 degrees: "
          f"{np.array_equal(full_correlate(K, X), full_correlate(X, K)[::-1, ::-1])})")
    print()

    # 3. Learn a kernel both ways from the same (input, target) pairs.
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 1, 6, 8))  # a batch of four random 6x8 images
    K_true = np.array([[1.0, -1.0], [0.5, 2.0]])
    y = conv2d(x, K_true[None, None])  # targets made by cross-correlating with K_true
    w_corr, y_corr = train_kernel(x, y, flip=False)
    w_conv, y_conv = train_kernel(x, y, flip=True)
    show("kernel that made the targets", K_true)
    show("learned by the correlating layer", w_corr)
    show("learned by the convolving layer", w_conv)
    show("convolving layer's kernel flipped", w_conv[::-1, ::-1])
    print(f"largest output difference between the two layers = {np.max(np.abs(y_corr - y_conv)):.2e}")
    print(f"largest error against the targets = {max(np.max(np.abs(y_corr - y)), np.max(np.abs(y_conv - y))):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
