"""The layer registry: layer classes by name, including third-party plugins.

Built-in layers register themselves with ``@register_layer("name")`` when
:mod:`cnnframe.layers` is imported.  Third-party packages expose layers through
the entry-point group ``cnnframe.layers``; each entry point names a module
(importing it runs its ``@register_layer`` decorators) or a Layer class
(registered under the entry point's name unless it registered itself).  In a
plugin's ``pyproject.toml``::

    [project.entry-points."cnnframe.layers"]
    mylayers = "my_package.layers"            # a module full of @register_layer classes
    swish = "my_package.act:Swish"            # or a single class

Plugins are discovered lazily: the first lookup of a name that is not built in
(or the first call to :func:`available_layers`) loads every entry point, so a
config naming a plugin's layer builds without importing the plugin by hand.  A
plugin that fails to load is reported with a ``RuntimeWarning`` naming its
distribution (see :func:`plugin_errors`); the rest of the registry keeps working.
"""
import difflib
import importlib
import importlib.metadata
import inspect
import re
import threading
import warnings

ENTRY_POINT_GROUP = "cnnframe.layers"

_registry = {}          # name -> Layer subclass
_origins = {}           # name -> "built-in" or the plugin distribution's name
_plugin_errors = []     # PluginError records
_plugins_loaded = False
_builtins_loaded = False
_loading_origin = None  # distribution name while a plugin is being imported
_lock = threading.RLock()
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnknownLayerError(ValueError, KeyError):
    """Raised by :func:`get_layer` for a name nobody registered (a ValueError and a KeyError)."""

    __str__ = Exception.__str__


class PluginError:
    """A plugin entry point that failed to load.

    Attributes: ``entry_point``, ``value``, ``distribution``, ``error``.
    """

    __slots__ = ("entry_point", "value", "distribution", "error")

    def __init__(self, entry_point, value, distribution, error):
        self.entry_point = entry_point
        self.value = value
        self.distribution = distribution
        self.error = error

    def __str__(self):
        return (f"layer plugin {self.entry_point!r} ({self.value}) from package "
                f"{self.distribution!r} failed to load: {self.error}")

    __repr__ = __str__


def _qualname(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer(name):
    """Class decorator registering a :class:`cnnframe.layers.Layer` subclass under `name`.

    Sets ``cls.type_name = name``.  Names are identifiers (letters, digits, ``_``).

    Raises
    ------
    ValueError
        If `name` is already taken by another class (both classes are named).
    TypeError
        If the decorated object is not a Layer subclass.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"register_layer: name must be an identifier such as 'my_conv', "
                         f"got {name!r}")

    def decorator(cls):
        from cnnframe.layers.base import Layer
        if not (inspect.isclass(cls) and issubclass(cls, Layer)):
            raise TypeError(f"register_layer({name!r}): {cls!r} is not a subclass of "
                            "cnnframe.layers.Layer")
        with _lock:
            existing = _registry.get(name)
            if existing is not None and existing is not cls:
                raise ValueError(
                    f"register_layer: layer name {name!r} is already registered to "
                    f"{_qualname(existing)} ({_origins.get(name, 'built-in')}); cannot register "
                    f"{_qualname(cls)} under the same name")
            cls.type_name = name
            _registry[name] = cls
            _origins[name] = _loading_origin or ("built-in" if cls.__module__.startswith(
                "cnnframe.") else cls.__module__.split(".")[0])
        return cls

    return decorator


def unregister_layer(name):
    """Remove `name` from the registry (for tests and interactive work); returns the class."""
    with _lock:
        _origins.pop(name, None)
        return _registry.pop(name)


def _load_builtins():
    global _builtins_loaded
    if not _builtins_loaded:
        with _lock:
            if not _builtins_loaded:
                _builtins_loaded = True
                importlib.import_module("cnnframe.layers")


def _entry_points():
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _distribution_name(ep):
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    if name:
        return name
    return str(getattr(ep, "value", "?")).split(":")[0].split(".")[0]


def load_plugins(reload=False):
    """Load every ``cnnframe.layers`` entry point (once; ``reload=True`` retries all of them).

    Returns the list of :class:`PluginError` for plugins that failed.
    """
    global _plugins_loaded, _loading_origin
    _load_builtins()
    with _lock:
        if _plugins_loaded and not reload:
            return list(_plugin_errors)
        _plugins_loaded = True
        _plugin_errors.clear()
        try:
            eps = list(_entry_points())
        except Exception as exc:  # a broken metadata directory must not break built-ins
            _plugin_errors.append(PluginError("*", ENTRY_POINT_GROUP, "?", repr(exc)))
            warnings.warn(f"cnnframe: could not list layer plugins: {exc!r}", RuntimeWarning,
                          stacklevel=3)
            return list(_plugin_errors)
        from cnnframe.layers.base import Layer
        for ep in eps:
            dist = _distribution_name(ep)
            _loading_origin = dist
            try:
                obj = ep.load()
                if inspect.isclass(obj):
                    if not issubclass(obj, Layer):
                        raise TypeError(f"{ep.value} is not a cnnframe.layers.Layer subclass")
                    if _registry.get(getattr(obj, "type_name", None)) is not obj:
                        register_layer(ep.name)(obj)
            except Exception as exc:  # report, keep going: one bad plugin must not break others
                err = PluginError(ep.name, getattr(ep, "value", "?"), dist,
                                  f"{type(exc).__name__}: {exc}")
                _plugin_errors.append(err)
                warnings.warn(f"cnnframe: {err}; its layers are unavailable", RuntimeWarning,
                              stacklevel=3)
            finally:
                _loading_origin = None
        return list(_plugin_errors)


def plugin_errors():
    """The :class:`PluginError` records of plugins that failed to load (after discovery)."""
    with _lock:
        return list(_plugin_errors)


def get_layer(name):
    """The Layer class registered under `name`, loading plugins on the first unknown name.

    Raises
    ------
    UnknownLayerError (a ValueError and KeyError)
        Listing the known names and the closest match.
    """
    _load_builtins()
    cls = _registry.get(name)
    if cls is not None:
        return cls
    load_plugins()
    cls = _registry.get(name)
    if cls is not None:
        return cls
    known = sorted(_registry)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    msg = f"unknown layer type {name!r}{hint}; known layer types: {', '.join(known)}"
    if _plugin_errors:
        msg += ". Note: " + "; ".join(str(e) for e in _plugin_errors)
    raise UnknownLayerError(msg)


def available_layers():
    """Sorted names of all registered layers (built-in and plugins)."""
    load_plugins()
    with _lock:
        return sorted(_registry)


def layer_origin(name):
    """"built-in" or the name of the plugin distribution that registered `name`."""
    get_layer(name)
    return _origins.get(name, "built-in")
