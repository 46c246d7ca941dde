"""`cnnframe layers`: the table of registered layers, with plugins and their failures."""
import sys

import pytest
from fake_plugins import Double, FakeEntryPoint

from cnnframe.cli import main
from cnnframe.registry import register_layer, unregister_layer


def test_cli_layers_lists_every_builtin(plugins, capsys):
    plugins()
    assert main(["layers", "-v"]) == 0
    out = capsys.readouterr().out
    for name in ["conv2d", "batch_norm2d", "concat", "identity"]:
        assert name in out
    assert "in_channels, out_channels, kernel_size, stride=1" in out
    assert "cnnframe" in sys.modules


def test_layers_reports_a_failing_plugin_and_lists_the_rest(plugins, capsys):
    def broken():
        raise ImportError("No module named 'missing_dependency'")

    @register_layer("good_plugin_layer")
    class Good(Double):
        pass

    unregister_layer("good_plugin_layer")
    plugins(FakeEntryPoint("broken", "broken_pkg.layers", "broken-pkg", broken),
            FakeEntryPoint("good_plugin_layer", "good_pkg:Good", "good-pkg", lambda: Good))
    with pytest.warns(RuntimeWarning, match="'broken'.*from package 'broken-pkg' failed"):
        assert main(["layers"]) == 1
    out = capsys.readouterr().out
    assert "good_plugin_layer" in out and "good-pkg" in out
    assert "FAILED plugin" in out and "broken-pkg" in out and "missing_dependency" in out


def test_cli_layers_aligns_every_column_with_long_plugin_names(plugins, capsys):
    class Long(Double):
        pass

    plugins(FakeEntryPoint("long_named", "some_pkg:Long", "a-plugin-with-a-long-name",
                           lambda: Long))
    assert main(["layers"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert any("a-plugin-with-a-long-name" in r for r in rows)
    # the class path (the last column) starts at the same offset in every row
    starts = {len(r) - len(r.split()[-1]) for r in rows}
    assert len(starts) == 1, "\n".join(rows)
    origin_starts = {r.index(r.split()[1]) for r in rows}
    assert len(origin_starts) == 1, "\n".join(rows)
