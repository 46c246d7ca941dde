"""examples/corr2d.py prints the textbook corr2d result and correct output sizes."""
import re

import numpy as np


def corr2d_loops(x, k, padding=0, stride=1):
    """Cross-correlation by explicit loops over a zero-padded copy of x."""
    xp = np.zeros((x.shape[0] + 2 * padding, x.shape[1] + 2 * padding))
    xp[padding:padding + x.shape[0], padding:padding + x.shape[1]] = x
    rows = []
    i = 0
    while i + k.shape[0] <= xp.shape[0]:
        row, j = [], 0
        while j + k.shape[1] <= xp.shape[1]:
            row.append(sum(xp[i + a, j + b] * k[a, b]
                           for a in range(k.shape[0]) for b in range(k.shape[1])))
            j += stride
        rows.append(row)
        i += stride
    return np.array(rows)


def count_positions(n, k, padding, stride):
    """How many kernel placements fit along one axis, counted one by one."""
    return sum(1 for start in range(0, n + 2 * padding, stride) if start + k <= n + 2 * padding)


X = np.arange(9.0).reshape(3, 3)
K = np.array([[0.0, 1.0], [2.0, 3.0]])


def test_prints_the_worked_example(run_example, printed):
    out = run_example("corr2d.py")
    assert np.array_equal(printed(out, "X"), X.ravel())
    assert np.array_equal(printed(out, "K"), K.ravel())
    y = printed(out, "Y = corr2d(X, K)")
    assert np.array_equal(y, corr2d_loops(X, K).ravel())
    assert np.array_equal(y, [19, 25, 37, 43])
    assert printed(out, "Y[0, 0]")[-1] == corr2d_loops(X, K)[0, 0]
    assert printed(out, "output shape")[-2:].tolist() == [2, 2]


def test_output_size_table_matches_counted_positions(run_example):
    out = run_example("corr2d.py")
    lines = out.splitlines()
    start = lines.index(next(l for l in lines if l.split()[:2] == ["n", "k"])) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append([int(v) for v in re.findall(r"\d+", line)])
    assert len(rows) >= 5
    assert any(r[2] > 0 for r in rows) and any(r[3] > 1 for r in rows)
    for n, k, p, s, formula, actual in rows:
        assert formula == actual == count_positions(n, k, p, s), (n, k, p, s)


def test_padded_strided_example(run_example, printed):
    out = run_example("corr2d.py")
    y = printed(out, "corr2d(X, K, padding=1, stride=2)")
    assert np.array_equal(y, corr2d_loops(X, K, padding=1, stride=2).ravel())
