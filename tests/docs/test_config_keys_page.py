"""The generated reference pages (docs/_ext/reference_pages.py) list what the code accepts.

The training-config page must show every key the config validation, the model config and the
optimizer / schedule / loss / transform / dataset registries accept, in its own section, each
with a description from the schema in cnnframe/train/config.py's docstring; the keys it shows
at the top level and in [data] / [checkpoint] must be exactly those validate_config accepts.
The layers table must list every built-in layer with its constructor's keys and its
docstring's Input / Output shape.
"""
import inspect
import re
import sys
from pathlib import Path

import pytest

import cnnframe.layers
from cnnframe import losses
from cnnframe.data import registry as data_registry
from cnnframe.data import transforms
from cnnframe.graph import config as model_config
from cnnframe.optim import config as optim_config
from cnnframe.train import config as train_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "_ext"))
import reference_pages  # noqa: E402

PAGE = reference_pages.ConfigKeysPage()


def section(title):
    """The page's text from the `## title` heading to the next `## ` heading."""
    parts = re.split(r"^## ", PAGE.text, flags=re.M)
    found = [p for p in parts if p.startswith(title + "\n")]
    assert len(found) == 1, f"no single section {title!r} on the page"
    return found[0]


def _args(cls, exclude=()):
    return [n for n in list(inspect.signature(cls.__init__).parameters)[1:]
            if n not in exclude and n not in ("args", "kwargs")]


def _expected():
    """(section title, key) pairs straight from the code's own lists and signatures."""
    pairs = [("Top level", k) for k in train_config.TOP_KEYS]
    pairs += [("`[data]`", k) for k in train_config.DATA_KEYS]
    pairs += [("`[checkpoint]`", k) for k in train_config.CHECKPOINT_KEYS]
    pairs += [("`[model]`", k) for k in ("file", *model_config.GRAPH_KEYS,
                                         *model_config.SEQUENTIAL_KEYS, *model_config.NODE_KEYS)]
    pairs += [("`[data]`", name) for name in data_registry.DATASETS]
    pairs += [("`[data]`", alias) for alias in data_registry.ALIASES]
    for name, cls in transforms.TRANSFORMS.items():
        pairs += [("`[data]`", name)] + [("`[data]`", k) for k in _args(cls)]
    pairs += [("`[data]`", alias) for alias in transforms.ALIASES]
    for name, cls in optim_config.OPTIMIZERS.items():
        pairs += [("`[optimizer]`", name)] + [("`[optimizer]`", k) for k in _args(cls, {"source"})]
    for name, cls in optim_config.SCHEDULES.items():
        pairs += [("`[schedule]`", name)]
        pairs += [("`[schedule]`", k) for k in _args(cls, {"optimizer", "total_steps"})]
    pairs += [("`[schedule]`", alias) for alias in optim_config._SCHEDULE_ALIASES]
    for name in losses.available_losses():
        pairs += [("`[loss]`", name)] + [("`[loss]`", k) for k in losses.get_loss(name).get_config()]
    return sorted(set(pairs))


@pytest.mark.parametrize("title, key", _expected())
def test_every_key_appears_in_its_section(title, key):
    text = section(title)
    assert re.search(rf"`{re.escape(key)}(=[^`]*)?`", text), f"{key!r} missing from {title}"


def test_every_key_has_a_description():
    assert PAGE.undocumented == []


def _minimal():
    return {"model": {"input_shape": [1, 4, 4], "layers": [{"type": "flatten"}]},
            "data": {"dataset": "shapes"}, "optimizer": {"type": "sgd", "lr": 0.1},
            "epochs": 1, "batch_size": 2}


def _is_accepted(cfg):
    try:
        train_config.validate_config(cfg)
    except (ValueError, TypeError) as exc:
        return "unknown key" not in str(exc)
    return True


def _table_keys(title):
    """The first column of the section's own key table (not of its ### subsections)."""
    return re.findall(r"^\| `(\w+)` \|", section(title).split("\n### ")[0], flags=re.M)


@pytest.mark.parametrize("title, where", [("Top level", None), ("`[data]`", "data"),
                                          ("`[checkpoint]`", "checkpoint")])
def test_the_keys_shown_are_exactly_the_keys_accepted(title, where):
    shown = _table_keys(title)
    assert shown, f"no key table under {title}"
    for key in shown + ["no_such_key"]:
        cfg = _minimal()
        target = cfg if where is None else cfg.setdefault(where, {})
        target.setdefault(key, 1)
        assert _is_accepted(cfg) == (key != "no_such_key"), key


def test_a_new_key_in_the_code_shows_up_and_asks_for_a_description(monkeypatch):
    monkeypatch.setattr(train_config, "TOP_KEYS", train_config.TOP_KEYS + ("new_key",))
    page = reference_pages.ConfigKeysPage()
    assert "| `new_key` |" in page.text
    assert page.undocumented == ["new_key"]


def test_a_key_dropped_from_the_schema_docstring_is_reported(monkeypatch):
    doc = "\n".join(line for line in train_config.__doc__.splitlines()
                    if not line.strip().startswith("epochs ="))
    monkeypatch.setattr(train_config, "__doc__", doc)
    assert reference_pages.ConfigKeysPage().undocumented == ["epochs"]


def test_schema_parser_reads_sections_values_and_continued_comments():
    doc = ("    top = 1                  # a number\n\n"
           "    [sec]                    # a table\n"
           "    key = [1, 2]             # first part\n"
           "                             # second part\n"
           "    # alt = \"x\"              # another form\n")
    assert reference_pages.schema_from_docstring(doc) == {
        ("", "top"): ("1", "a number"), ("", "sec"): ("", "a table"),
        ("sec", "key"): ("[1, 2]", "first part second part"),
        ("sec", "alt"): ('"x"', "another form")}


# ------------------------------------------------------------------------------ layer table

BUILTIN = sorted((cls.type_name, cls) for cls in map(cnnframe.layers.__dict__.get,
                                                      cnnframe.layers.__all__)
                 if isinstance(cls, type) and getattr(cls, "type_name", None))
TABLE = reference_pages.layer_table_markdown()


def _row(name):
    rows = [line for line in TABLE.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"layer {name!r} is not in the table once"
    return rows[0]


@pytest.mark.parametrize("name, cls", BUILTIN, ids=[n for n, _ in BUILTIN])
def test_every_builtin_layer_is_in_the_table_with_its_keys_and_shapes(name, cls):
    row = _row(name)
    for key in _args(cls):
        assert re.search(rf"`{key}(=[^`]*)?`", row), f"{name}: config key {key!r} missing"
    shape_in, shape_out = reference_pages.layer_shapes(cls)
    assert shape_in and shape_out, f"{cls.__name__}'s docstring lacks Input/Output shape"
    assert reference_pages._cell(shape_in) in row and reference_pages._cell(shape_out) in row


def test_table_lists_only_builtin_layers():
    names = re.findall(r"^\| `(\w+)` \|", TABLE, flags=re.M)
    assert sorted(names) == [n for n, _ in BUILTIN]


@pytest.mark.parametrize("doc, expected", [
    ("Args:\n    x: y.\n\nInput shape: (N, C).  Output shape: (N, F).", ("(N, C).", "(N, F).")),
    ("Input shape: (N, C, H, W).\nOutput shape: (N, F, OH, OW), OH = floor(\n    H / s).",
     ("(N, C, H, W).", "(N, F, OH, OW), OH = floor( H / s).")),
    ("No shapes here.", ("", "")),
])
def test_layer_shapes_reads_the_docstring(doc, expected):
    cls = type("Fake", (), {"__doc__": doc})
    assert reference_pages.layer_shapes(cls) == expected
