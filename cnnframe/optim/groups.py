"""Parameter groups and name patterns: which parameters get which lr and weight decay.

A pattern selects parameters by their ``"node.param"`` key (shell wildcards, as
`fnmatch`).  It matches a key when it matches

- the whole key: ``"conv1.weight"``, ``"bn*"`` (``*`` also crosses dots),
- its last part(s): ``"bias"`` and ``"*.bias"`` match ``"conv1.bias"``, or
- the node name: ``"conv1"`` matches ``"conv1.weight"`` and ``"conv1.bias"``.

The same rule selects the parameters to freeze (`cnnframe.graph.Model.freeze`).
"""
import fnmatch
import math

__all__ = ["matches", "select", "ParamGroups"]

GROUP_KEYS = ("params", "lr", "weight_decay")


def matches(key, pattern):
    """True when parameter `key` ("node.param") is selected by `pattern` (see module docstring)."""
    node = key.rpartition(".")[0]
    return (fnmatch.fnmatchcase(key, pattern) or fnmatch.fnmatchcase(key, "*." + pattern)
            or (bool(node) and fnmatch.fnmatchcase(node, pattern)))


def _patterns(value, where):
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(p, str) and p for p in value)):
        raise ValueError(f"{where} must be a pattern string or a non-empty list of them, "
                         f"e.g. \"*.bias\" or [\"bn*\", \"*.bias\"]; got {value!r}")
    return tuple(value)


def select(keys, patterns, where="patterns"):
    """The keys (in order) that any of `patterns` selects; a pattern selecting none is an error.

    Parameters
    ----------
    keys : iterable of str
        Parameter keys, e.g. ``model.params``.
    patterns : str or sequence of str
    where : str
        Names the patterns in error messages.

    Raises
    ------
    ValueError
        A pattern that selects no key (a typo would otherwise go unnoticed), naming the keys.
    """
    keys = list(keys)
    patterns = _patterns(patterns, where)
    for pat in patterns:
        if not any(matches(k, pat) for k in keys):
            raise ValueError(f"{where}: {pat!r} selects no parameter; the parameters are "
                             f"{', '.join(keys) or '(none)'}")
    return [k for k in keys if any(matches(k, p) for p in patterns)]


class ParamGroups:
    """Per-parameter lr factor and weight decay from a list of group settings.

    Parameters
    ----------
    groups : sequence of dict
        Each ``{"params": pattern or [patterns], "lr": float, "weight_decay": float}``
        (lr and weight_decay optional).  A parameter takes the settings of the first
        group that selects it; parameters no group selects keep the optimizer's.
    keys : iterable of str
        The parameter keys of the optimizer's source (each pattern must select one).
    base_lr : float
        The optimizer's initial lr.  A group's ``lr`` is its lr at that point: the
        group's step uses ``optimizer.lr * group lr / base_lr``, so an LR schedule
        scales every group by the same factor (as PyTorch's schedules scale each
        group's lr).

    Raises
    ------
    ValueError
        Unknown keys (naming the valid ones), patterns selecting nothing, bad values,
        or a group lr with ``base_lr == 0``.
    """

    def __init__(self, groups, keys, base_lr):
        from cnnframe.optim.base import _check_range
        if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
            raise ValueError(f"groups must be a list of tables {{params = ..., lr = ..., "
                             f"weight_decay = ...}}, got {groups!r}")
        keys = list(keys)
        self.groups = []
        for i, group in enumerate(groups):
            where = f"groups[{i}]"
            if not isinstance(group, dict):
                raise ValueError(f"{where} must be a table with 'params', got {group!r}")
            unknown = [k for k in group if k not in GROUP_KEYS]
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                 f"valid keys: {', '.join(GROUP_KEYS)}")
            if "params" not in group:
                raise ValueError(f"{where} needs 'params' (a pattern such as \"*.bias\")")
            settings = {"params": _patterns(group["params"], f"{where}.params")}
            select(keys, settings["params"], f"{where}.params")
            if "lr" in group:
                lr = _check_range(f"{where}.lr", group["lr"], 0.0, math.inf)
                if base_lr == 0:
                    raise ValueError(f"{where}.lr: a group lr is relative to the optimizer's "
                                     "lr, which is 0; give the optimizer an lr > 0")
                settings["lr_factor"] = lr / base_lr
                settings["lr"] = lr
            if "weight_decay" in group:
                settings["weight_decay"] = _check_range(f"{where}.weight_decay",
                                                        group["weight_decay"], 0.0, math.inf)
            self.groups.append(settings)
        self._cache = {}

    def settings(self, key):
        """(lr factor, weight decay or None) of parameter `key`: (1.0, None) outside every group."""
        hit = self._cache.get(key)
        if hit is None:
            hit = (1.0, None)
            for g in self.groups:
                if any(matches(key, p) for p in g["params"]):
                    hit = (g.get("lr_factor", 1.0), g.get("weight_decay"))
                    break
            self._cache[key] = hit
        return hit

    def to_config(self):
        """The groups as given (plain values)."""
        return [{k: (list(v) if k == "params" else v) for k, v in g.items() if k != "lr_factor"}
                for g in self.groups]
