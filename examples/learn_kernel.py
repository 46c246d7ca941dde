"""Learning a kernel back from its input and output.

edge_detection.py made Y by sliding K = [[1, -1]] over an image X.  Here a Conv2d
layer with a 1x2 kernel and no bias starts from a random kernel and sees only the
pair (X, Y).  Plain gradient descent on the squared error recovers K.

The loss is the SUM of squared errors over the 6x7 output, as in the reference
text, so the printed losses are on the same scale as its run (6.453, 1.491, 0.418,
0.139, 0.051).  (cnnframe.losses.MeanSquaredError averages instead: its loss is
42 times smaller and would need a 42 times larger learning rate for the same steps.)

Run:  python examples/learn_kernel.py
"""
import numpy as np

from cnnframe.functional import correlate2d
from cnnframe.layers import Conv2d
from cnnframe.optim import SGD


def main():
    # The data: the edge image and its edges found by K.
    X = np.ones((6, 8), dtype=np.float32)
    X[:, 2:6] = 0
    K = np.array([[1.0, -1.0]], dtype=np.float32)
    Y = correlate2d(X, K)
    # Layers take batches (N, C, H, W): one example with one channel.
    X, Y = X.reshape(1, 1, 6, 8), Y.reshape(1, 1, 6, 7)

    # One filter of size 1x2, no bias, randomly initialised.  Any seed converges; this one
    # starts about as far from K as the reference run did.
    conv = Conv2d(in_channels=1, out_channels=1, kernel_size=(1, 2), bias=False, seed=74)
    optimizer = SGD(conv, lr=3e-2)  # no momentum: w <- w - lr * dloss/dw
    w0 = conv.params["weight"].reshape(1, 2)
    print(f"initial kernel = {np.array2string(w0, precision=6, floatmode='fixed')}")
    print()

    for i in range(10):
        Y_hat = conv.forward(X)
        loss = float(np.sum((Y_hat - Y) ** 2))
        conv.backward(2 * (Y_hat - Y))  # d(loss)/d(Y_hat); fills conv.grads["weight"]
        optimizer.step()
        if (i + 1) % 2 == 0:
            print(f"iteration {i + 1}, loss {loss:.3f}")
    print()

    learned = conv.params["weight"].reshape(1, 2)
    print(f"learned kernel = {np.array2string(learned, precision=4, floatmode='fixed')}")
    print()
    print(f"true kernel = {np.array2string(K, precision=4, floatmode='fixed')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
