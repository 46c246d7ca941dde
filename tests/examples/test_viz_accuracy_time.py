"""cnnframe.viz.accuracy_time_figure: one marker per run, a labelled mean per group."""
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from cnnframe import viz  # noqa: E402

RUNS = [("fast", 28.0, 0.93), ("small", 16.6, 0.8565), ("fast", 29.0, 0.94),
        ("fast", 30.0, 0.935), ("resnet", 41.0, 0.8611)]


def scatter_offsets(fig):
    """The (x, y) points of each scatter in the order drawn."""
    return [np.asarray(c.get_offsets()) for c in fig.axes[0].collections]


def test_each_group_has_its_runs_then_its_mean():
    fig = viz.accuracy_time_figure(RUNS)
    drawn = scatter_offsets(fig)
    assert len(drawn) == 2 * 3  # groups in order of first appearance: fast, small, resnet
    for i, label in enumerate(["fast", "small", "resnet"]):
        runs = np.array([(m, 100 * a) for g, m, a in RUNS if g == label])
        np.testing.assert_allclose(drawn[2 * i], runs)
        np.testing.assert_allclose(drawn[2 * i + 1], [runs.mean(axis=0)])
        # the runs and the mean of a group share a colour, other groups have others
        runs_colour = fig.axes[0].collections[2 * i].get_facecolor()[0][:3]
        mean_colour = fig.axes[0].collections[2 * i + 1].get_facecolor()[0][:3]
        np.testing.assert_allclose(runs_colour, mean_colour)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[0] == "fast\n93.50% in 29.0 min, mean of 3"
    assert texts[1] == "small\n85.65% in 16.6 min"


def test_time_axis_starts_at_zero_and_leaves_room_right_of_the_last_mean():
    low, high = viz.accuracy_time_figure(RUNS).axes[0].get_xlim()
    assert low == 0
    assert high >= 41.0 + 0.25 * (41.0 - 16.6)  # the label right of the rightmost mean


def test_png_has_the_size_asked_and_a_title(tmp_path):
    path = viz.save_accuracy_time(RUNS, tmp_path / "sub" / "acc.png", width_px=640,
                                  height_px=400, title="CIFAR-10")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (640, 400)
    assert [p.name for p in path.parent.iterdir()] == ["acc.png"]  # no temporary left


@pytest.mark.parametrize("points, pattern", [
    ([], "at least one"),
    ([("a", 1.0)], r"points\[0\] must be a \(label, minutes, accuracy\) triple"),
    ([("a", 1.0, 0.5), ("b", -1.0, 0.5)], r"points\[1\] \('b'\): minutes .* got -1.0"),
    ([("a", float("nan"), 0.5)], "minutes must be a finite"),
    ([("a", 1.0, 93.5)], r"accuracy must be a fraction in \[0, 1\], got 93.5"),
])
def test_bad_points_are_refused(points, pattern):
    with pytest.raises(ValueError, match=pattern):
        viz.accuracy_time_figure(points)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="width_px must be a positive int"):
        viz.accuracy_time_figure(RUNS, width_px=0)
