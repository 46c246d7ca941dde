"""examples/similarity_filter.py: filter responses as window-filter similarity."""
import numpy as np

SCRIPT = "similarity_filter.py"
WINDOWS = ["right-bright", "left-bright", "bar", "white"]
FILTERS = ["right-column", "horizontal-bar", "all-ones"]


def response(window, filt):
    """Sum over the 3x3 window of pixel * weight, by explicit loops."""
    return sum(window[i][j] * filt[i][j] for i in range(3) for j in range(3))


def test_windows_and_filters_are_the_textbook_ones(run_example, printed):
    out = run_example(SCRIPT)
    right_bright = printed(out, "window right-bright (x 1/255)").reshape(3, 3)
    assert right_bright[:, 2].tolist() == [255] * 3 and (right_bright[:, :2] == 5).all()
    left_bright = printed(out, "window left-bright (x 1/255)").reshape(3, 3)
    assert left_bright[:, 2].tolist() == [5] * 3 and (left_bright[:, :2] == 255).all()
    assert printed(out, "filter right-column").tolist() == [0, 0, 1] * 3
    assert printed(out, "filter horizontal-bar").tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert printed(out, "filter all-ones").tolist() == [1] * 9


def test_response_table_matches_loops(run_example, printed):
    out = run_example(SCRIPT)
    windows = [printed(out, f"window {w} (x 1/255)").reshape(3, 3) / 255 for w in WINDOWS]
    filters = [printed(out, f"filter {f}").reshape(3, 3) for f in FILTERS]
    table = printed(out, "responses (rows: windows, columns: filters)").reshape(4, 3)
    expected = np.array([[response(w, f) for f in filters] for w in windows])
    np.testing.assert_allclose(table, expected, atol=1e-4)


def test_the_worked_numbers(run_example, printed):
    out = run_example(SCRIPT)
    table = printed(out, "responses (rows: windows, columns: filters)").reshape(4, 3)
    assert abs(table[0, 0] - 3.0) < 1e-4                       # right-bright window
    assert abs(table[1, 0] - 15 / 255) < 1e-4                  # opposite window: about 0.058
    assert abs(table[1, 0] - 0.058) < 1e-3
    assert table[2, 1] == table[3, 1]                          # bar vs white: same
    assert table[2, 2] != table[3, 2]                          # all-ones tells them apart
    assert "right-column filter: right-bright window 3.0000, opposite window 0.0588" in out


def test_feature_map_locates_the_bar(run_example, printed):
    out = run_example(SCRIPT)
    image = printed(out, "image with a bar on row 4").reshape(7, 7)
    bar = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    expected = np.array([[response(image[i:i + 3, j:j + 3], bar) for j in range(5)]
                         for i in range(5)])
    fmap = printed(out, "horizontal-bar feature map").reshape(5, 5)
    np.testing.assert_allclose(fmap, expected)
    i, j = np.unravel_index(np.argmax(expected), expected.shape)
    assert f"strongest response at output row {i}, column {j}" in out
