"""cnnframe: a Cython-accelerated CPU framework for convolutional networks.

Typed Cython kernels (cnnframe_ext: convolution by im2col + GEMM, Winograd and a
direct kernel, pooling, batch normalisation and ReLU) sit beneath a pure-Python
graph of layers registered by name.
"""
import importlib

try:
    from cnnframe_ext import conv as _conv_kernels, pool as _pool_kernels  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without a build
    raise ImportError(
        "cnnframe's compiled kernels (cnnframe_ext) are not built or cannot be loaded "
        f"({exc}). Build them with `pip install -e .` (or `make build`) from the "
        "cnnframe source directory.") from exc

from cnnframe._threads import get_num_threads, set_num_threads
from cnnframe._config import active_isa, available_isas, show_config, use_isa
from cnnframe import functional
from cnnframe.functional import conv_output_size

__version__ = "0.1.0"

# Heavier parts load on first use, so `import cnnframe` stays quick for the CLI.
_LAZY = {
    "Model": "cnnframe.graph",
    "receptive_field": "cnnframe.graph",
    "Trainer": "cnnframe.train",
    # for plugin authors: subclass Layer, decorate it with @register_layer("name")
    "Layer": "cnnframe.layers",
    "register_layer": "cnnframe.registry",
}

__all__ = ["functional", "set_num_threads", "get_num_threads", "conv_output_size", "__version__",
           "show_config", "available_isas", "active_isa", "use_isa", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnframe' has no attribute {name!r}")


def __dir__():  # the lazy names too, for tab completion and dir(cnnframe)
    return sorted(set(globals()) | set(_LAZY))
