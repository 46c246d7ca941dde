"""Reference pages generated from cnnframe's own code, so they cannot drift from it.

- :func:`layer_table_markdown`: every built-in layer in the registry, its config keys (its
  ``__init__`` arguments with their defaults) and its Input / Output shape (from its docstring).
- :func:`config_keys_markdown`: every key of a training config, from the key lists and
  registries the config validation itself uses (``cnnframe.train.config.TOP_KEYS`` and the
  rest), each described by the commented schema in that module's docstring.

Both return Markdown (MyST) text; the Sphinx extension cnnframe_docs.py writes them to
docs/_generated/ at build time, and tests/docs/test_config_keys_page.py checks them.
"""
import inspect
import re

_EMPTY = inspect.Parameter.empty


def _cell(text):
    """Text safe inside one cell of a Markdown pipe table."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text):
    return "``" + str(text) + "``" if "`" in str(text) else f"`{text}`"


def init_keys(cls, exclude=()):
    """[(name, default or inspect.Parameter.empty)] of ``cls.__init__``'s keyword arguments."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [(p.name, p.default) for p in params
            if p.name not in exclude and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _keys_text(keys):
    parts = []
    for name, default in keys:
        parts.append(f"`{name}`" if default is _EMPTY else f"`{name}={default!r}`")
    return ", ".join(parts) or "none"


# ----------------------------------------------------------------------------------- layers

_SHAPE = {
    "input": re.compile(r"Input shape:\s*(.*?)\s*(?=Output shape:|\n\s*\n|$)", re.S),
    "output": re.compile(r"Output shape:\s*(.*?)\s*(?=Input shape:|\n\s*\n|$)", re.S),
}


def layer_shapes(cls):
    """(input shape, output shape) texts of a layer class's docstring ("" when missing)."""
    doc = inspect.getdoc(cls) or ""
    found = []
    for key in ("input", "output"):
        m = _SHAPE[key].search(doc)
        found.append(" ".join(m.group(1).split()) if m else "")
    return tuple(found)


def builtin_layers():
    """[(type name, class)] of every built-in layer in the registry, by name."""
    from cnnframe import registry
    names = [n for n in registry.available_layers() if registry.layer_origin(n) == "built-in"]
    return [(n, registry.get_layer(n)) for n in names]


def layer_table_markdown():
    """A Markdown table: type name, class, config keys, input shape, output shape."""
    lines = ["| type | class | config keys (defaults) | input shape | output shape |",
             "|---|---|---|---|---|"]
    for name, cls in builtin_layers():
        shape_in, shape_out = layer_shapes(cls)
        lines.append("| " + " | ".join([
            f"`{name}`",
            "{py:class}" + f"`~{cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}`"
            if cls.__module__.startswith("cnnframe.layers") else f"`{cls.__qualname__}`",
            _cell(_keys_text(init_keys(cls))),
            _cell(shape_in), _cell(shape_out)]) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ training config

_SECTION = re.compile(r"^\s*\[(\w+)\]\s*(?:#\s*(.*))?$")
_KEY = re.compile(r"^\s*(#\s*)?(\w+)\s*=\s*(.*?)\s*(?:#\s*(.*))?$")
_COMMENT = re.compile(r"^\s{8,}#\s*(.*)$")


def schema_from_docstring(doc):
    """{(section or "", key): (example value, description)} from a commented TOML schema.

    The schema is the one in cnnframe/train/config.py's module docstring: ``key = value  #
    description`` lines, ``[section]  # description`` headers, and comment-only lines (indented
    to the comment column) that continue the description above them.
    """
    out = {}
    section, last = "", None
    for line in doc.splitlines():
        m = _SECTION.match(line)
        if m:
            section, last = m.group(1), ("", m.group(1))
            out[last] = ("", m.group(2) or "")
            continue
        m = _COMMENT.match(line)
        if m and last is not None and "=" not in m.group(1):
            value, text = out[last]
            out[last] = (value, (text + " " + m.group(1)).strip())
            continue
        m = _KEY.match(line)
        if m and not line.startswith("    " * 2):
            commented, key, value, text = m.groups()
            last = (section, key)
            if commented:  # an alternative form, e.g. "# file = ..." under [model]
                value, text = value, text or ""
            out[last] = (value, text or "")
            continue
        if not line.strip():
            last = None
    return out


class ConfigKeysPage:
    """The training-config reference page and the keys it documents, per section."""

    def __init__(self):
        self.keys = {}            # section title -> list of key names documented there
        self.undocumented = []    # keys the config module's schema does not describe
        self.text = self._render()

    def _table(self, title, rows, header=("key", "default", "description")):
        self.keys.setdefault(title, [])
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            self.keys[title].append(row[0])
            lines.append("| " + " | ".join([_code(row[0])] + [_cell(c) for c in row[1:]]) + " |")
        return "\n".join(lines) + "\n"

    def _render(self):
        from cnnframe import data, losses
        from cnnframe.data import registry as data_registry
        from cnnframe.data import transforms
        from cnnframe.graph import config as model_config
        from cnnframe.optim import config as optim_config
        from cnnframe.train import config as train_config

        schema = schema_from_docstring(train_config.__doc__)

        def described(section, key):
            value, text = schema.get((section, key)) or schema.get(("", key)) or ("", "")
            if not text and not value:
                self.undocumented.append(f"{section + '.' if section else ''}{key}")
            return value, text

        out = ["# Training config keys", "",
               "Every key a training config (`cnnframe train CONFIG`, "
               "{py:func}`cnnframe.train.load_config`) accepts, generated when the docs are "
               "built from the lists the config validation itself uses "
               "(`cnnframe/train/config.py`: `TOP_KEYS`, `DATA_KEYS`, `CHECKPOINT_KEYS`; the "
               "model, optimizer, schedule, loss, transform and dataset registries). Any other "
               "key is an error naming the valid ones. Descriptions come from the commented "
               "schema in that module's docstring.", ""]

        out += ["## Top level", ""]
        rows = []
        for key in train_config.TOP_KEYS:
            value, text = described("", key)
            if key in train_config.REQUIRED_TOP:
                default = "required"
            elif key in train_config.DEFAULTS:
                default = repr(train_config.DEFAULTS[key])
            else:
                default = value or "not set"
            rows.append((key, default, text))
        out += [self._table("top", rows), ""]

        out += ["## `[model]`", "",
                "A model config, as {py:meth}`cnnframe.Model.from_config` takes it, in one of "
                "two forms, or `file = \"my_model.toml\"` (a model file, relative to the "
                "training config; no other key then). The layer types and their config keys "
                "are listed in [the layers reference](api/layers.md).", ""]
        rows = [("file", "", "a model config file (.toml or .json), relative to this config")]
        out += [self._table("model", rows, ("key", "", "description")), ""]
        for title, keys, what in (("model.graph", model_config.GRAPH_KEYS, "Graph form"),
                                  ("model.sequential", model_config.SEQUENTIAL_KEYS,
                                   "Sequential form"),
                                  ("model.node", model_config.NODE_KEYS,
                                   "Each entry of `nodes` (graph form)")):
            self.keys[title] = list(keys)
            out += [f"- {what}: " + ", ".join(f"`{k}`" for k in keys) + "."]
        out += ["", "Both forms are described in {py:mod}`cnnframe.graph.config`.", ""]

        out += ["## `[data]`", ""]
        rows = []
        for key in train_config.DATA_KEYS:
            value, text = described("data", key)
            rows.append((key, "required" if key == "dataset" else value, text))
        out += [self._table("data", rows, ("key", "example", "description")), ""]

        names = data_registry.available_datasets()
        aliases = ", ".join(f"`{a}` = `{t}`" for a, t in sorted(data_registry.ALIASES.items()))
        out += ["### `data.dataset` and `data.options`", "",
                f"Datasets: {', '.join(f'`{n}`' for n in names)} (aliases: {aliases}). "
                "`options` holds keyword arguments of the dataset's class "
                "(sub-tables `options.train` / `options.test` apply to one split):", ""]
        classes = {"cifar10": data.CIFAR10, "image_folder": data.ImageFolder,
                   "mnist": data.MNIST, "fashion_mnist": data.FashionMNIST,
                   "shapes": data.Shapes}
        rows = []
        for name in names:
            cls = classes.get(name)
            keys = _keys_text(init_keys(cls, {"root", "train"})) if cls else "see its class"
            rows.append((name, f"{{py:class}}`cnnframe.data.{cls.__name__}`" if cls else "",
                         keys))
        out += [self._table("datasets", rows, ("dataset", "class", "options")), ""]

        out += ["### `data.augmentation` and `data.normalize`", "",
                "`augmentation` is a list of transforms (`{type = \"random_crop\", padding = "
                "4}`) applied to the uint8 training batches; `normalize` is "
                "`{mean = [...], std = [...]}`, applied after scaling to [0, 1] for training "
                "and evaluation. Transform types and their keys "
                f"(aliases: {', '.join(f'`{a}` = `{t}`' for a, t in sorted(transforms.ALIASES.items()))}):",
                ""]
        rows = [(name, _keys_text(init_keys(cls)))
                for name, cls in sorted(transforms.TRANSFORMS.items())]
        out += [self._table("transforms", rows, ("type", "keys")), ""]

        out += ["## `[loss]`", "",
                "`type` and the loss's own keys (default: `softmax_cross_entropy`):", ""]
        rows = []
        for name in losses.available_losses():
            loss = losses.get_loss(name)
            rows.append((name, type(loss).__name__, _keys_text(
                [(k, v) for k, v in loss.get_config().items()])))
        out += [self._table("loss", rows, ("type", "class", "keys")), ""]

        out += ["## `[optimizer]`", "",
                "`type` and the optimizer's constructor arguments "
                "({py:func}`cnnframe.optim.build_optimizer`):", ""]
        rows = [(name, cls.__name__, _keys_text(init_keys(cls, {"source"})))
                for name, cls in optim_config.OPTIMIZERS.items()]
        out += [self._table("optimizer", rows, ("type", "class", "keys")), ""]

        out += ["## `[schedule]`", "",
                "Optional (default: a constant learning rate); `type` and the schedule's "
                "arguments ({py:func}`cnnframe.optim.build_schedule`; `total_steps` comes from "
                "the run, not the config):", ""]
        aliases = {}
        for alias, target in optim_config._SCHEDULE_ALIASES.items():
            aliases.setdefault(target, []).append(alias)
        rows = [(name, ", ".join(f"`{a}`" for a in aliases.get(name, [])), cls.__name__,
                 _keys_text(init_keys(cls, {"optimizer", "total_steps"})))
                for name, cls in optim_config.SCHEDULES.items()]
        out += [self._table("schedule", rows, ("type", "aliases", "class", "keys")), ""]

        out += ["## `[checkpoint]`", ""]
        rows = []
        for key in train_config.CHECKPOINT_KEYS:
            value, text = described("checkpoint", key)
            rows.append((key, repr(train_config.DEFAULTS["checkpoint"].get(key, value)), text))
        out += [self._table("checkpoint", rows), ""]

        out += ["## `metrics`", "",
                "Metric names: `accuracy` and `top{k}_accuracy` (e.g. `top5_accuracy`); see "
                "{py:mod}`cnnframe.train.metrics`.", ""]
        return "\n".join(out)


def config_keys_markdown():
    """(page text, undocumented keys) of the training-config reference page."""
    page = ConfigKeysPage()
    return page.text, page.undocumented
