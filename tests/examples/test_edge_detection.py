"""examples/edge_detection.py: K = [[1, -1]] finds vertical edges only."""
import numpy as np

SCRIPT = "edge_detection.py"


def edge_image():
    x = np.ones((6, 8))
    for j in range(2, 6):
        for i in range(6):
            x[i, j] = 0.0
    return x


def correlate(x, k):
    kh, kw = k.shape
    return np.array([[sum(x[i + a, j + b] * k[a, b] for a in range(kh) for b in range(kw))
                      for j in range(x.shape[1] - kw + 1)] for i in range(x.shape[0] - kh + 1)])


def test_image_and_kernel(run_example, printed):
    out = run_example(SCRIPT)
    assert np.array_equal(printed(out, "X"), edge_image().ravel())
    assert printed(out, "K").tolist() == [1, -1]


def test_edges_found_where_intensity_changes(run_example, printed):
    out = run_example(SCRIPT)
    expected = correlate(edge_image(), np.array([[1.0, -1.0]]))
    y = printed(out, "Y = corr2d(X, K)").reshape(6, 7)
    np.testing.assert_array_equal(y, expected)
    # white (col 1) -> black (col 2) gives +1 at output column 1; black (5) -> white (6) -1 at 5
    assert (y[:, 1] == 1).all() and (y[:, 5] == -1).all()
    assert np.count_nonzero(y) == 12
    assert "+1 in output columns [1]" in out and "-1 in output columns [5]" in out


def test_transposed_image_gives_zeros(run_example, printed):
    out = run_example(SCRIPT)
    y_t = printed(out, "corr2d(X transposed, K)")
    assert y_t.size == 8 * 5 and not y_t.any()
    assert "all zeros: True" in out
    y_tt = printed(out, "corr2d(X transposed, K transposed)").reshape(7, 6)
    np.testing.assert_array_equal(y_tt, correlate(edge_image().T, np.array([[1.0], [-1.0]])))
    assert y_tt.any()
