"""examples/receptive_field.py: receptive fields reported, measured and recomputed here."""
import json
import re

import numpy as np

SCRIPT = "receptive_field.py"


def config(out, label):
    line = next(l for l in out.splitlines() if l.startswith(label + " = "))
    return json.loads(line[len(label) + 3:])


def dependency_span(layers, upto, index=4):
    """Size of the set of input indices (one axis, borders unclipped) that output `index` of
    layer `upto` depends on, found by walking the index sets down through the layers."""
    chain = []
    for layer in layers:
        k = layer.get("kernel_size", 1)
        s = layer.get("stride", k if layer["type"] == "max_pool2d" else 1)
        p = layer.get("padding", 0)
        chain.append((k, s, p))
        if layer["name"] == upto:
            break
    indices = {index}
    for k, s, p in reversed(chain):
        indices = {o * s - p + a for o in indices for a in range(k)}
    return max(indices) - min(indices) + 1


def summary_column(out, first_node, after=None):
    """node -> 'HxW' from the receptive-field column of the first summary listing first_node
    (after the line starting with `after`, if given)."""
    lines = out.splitlines()
    begin = 0 if after is None else next(i for i, l in enumerate(lines) if l.startswith(after))
    start = next(i for i, l in enumerate(lines) if i > begin and l.startswith(first_node + " "))
    rows = {}
    for line in lines[start:]:
        if line.startswith("-"):
            break
        parts = line.split()
        rows[parts[0]] = parts[-1]
    return rows


def test_two_stacked_2x2_convs_see_3x3(run_example):
    out = run_example(SCRIPT)
    cfg = config(out, "config")
    assert [l["kernel_size"] for l in cfg["layers"]] == [2, 2]
    assert cfg["input_shape"] == [1, 3, 3]
    expected = {"conv1": dependency_span(cfg["layers"], "conv1"),
                "conv2": dependency_span(cfg["layers"], "conv2")}
    assert expected == {"conv1": 2, "conv2": 3}
    for node, r in expected.items():
        assert f"receptive_field(model, {node!r}) = ({r}, {r})" in out
        assert f"measured receptive field of {node} = ({r}, {r})" in out
    assert summary_column(out, "conv1") == {"conv1": "2x2", "conv2": "3x3"}


def test_influence_masks(run_example, printed):
    out = run_example(SCRIPT)
    mask1 = printed(out, "input pixels reaching conv1's output [0, 0]").reshape(3, 3)
    mask2 = printed(out, "input pixels reaching conv2's output [0, 0]").reshape(3, 3)
    expected1 = np.zeros((3, 3))
    expected1[:2, :2] = 1
    np.testing.assert_array_equal(mask1, expected1)
    np.testing.assert_array_equal(mask2, np.ones((3, 3)))


def test_deeper_net_receptive_fields(run_example):
    out = run_example(SCRIPT)
    cfg = config(out, "deep config")
    table = dict(re.findall(r"^  (\w+)\s+(\d+) x \d+$", out, flags=re.M))
    assert len(table) >= 5
    column = summary_column(out, cfg["layers"][0]["name"], after="deep config")
    for node, r in table.items():
        expected = dependency_span(cfg["layers"], node)
        assert int(r) == expected, node
        assert column[node] == f"{expected}x{expected}", node
    assert max(int(r) for r in table.values()) > 3 * min(int(r) for r in table.values())
