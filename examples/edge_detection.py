"""Edge detection with a 1x2 kernel.

The kernel K = [[1, -1]] subtracts each pixel's right neighbour from it: the output
is 0 where the two are equal and non-zero only where the intensity changes between
neighbouring columns, i.e. at vertical edges.

Run:  python examples/edge_detection.py
"""
import numpy as np

from cnnframe.functional import correlate2d


def show(name, value):
    """Print `name =` and the array below it, then a blank line."""
    print(f"{name} =")
    print(np.array2string(np.asarray(value), precision=4, suppress_small=True))
    print()


def main():
    # A 6x8 image: white (1) everywhere except a black (0) band in the middle four columns.
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    K = np.array([[1.0, -1.0]])
    show("X", X)
    show("K", K)

    # Y has one column fewer than X (8 - 2 + 1 = 7): Y[i, j] = X[i, j] - X[i, j + 1].
    Y = correlate2d(X, K)
    show("Y = corr2d(X, K)", Y)
    print("+1 marks a white-to-black edge (left to right), -1 a black-to-white edge:")
    print(f"  +1 in output columns {sorted(set(np.nonzero(Y == 1)[1].tolist()))}")
    print(f"  -1 in output columns {sorted(set(np.nonzero(Y == -1)[1].tolist()))}")
    print()

    # Transposed, the edges are horizontal; a horizontal kernel sees no change along rows.
    Y_t = correlate2d(X.T, K)
    show("corr2d(X transposed, K)", Y_t)
    print(f"all zeros: {not Y_t.any()}  (K only detects vertical edges; "
          "K transposed would find these)")
    print()
    show("corr2d(X transposed, K transposed)", correlate2d(X.T, K.T))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
