"""Model graphs: named layer nodes built from configs, run, saved and summarised.

See :class:`Model`, :mod:`cnnframe.graph.config` (config format),
:mod:`cnnframe.graph.io` (file format) and :mod:`cnnframe.graph.sizes` (the memory
a model may need).
"""
from cnnframe.graph.config import load_config_file, normalize_config
from cnnframe.graph.io import load_model, save_model
from cnnframe.graph.model import Model
from cnnframe.graph.sizes import ModelTooLargeError, set_model_size_limit
from cnnframe.graph.summary import receptive_field, receptive_fields, summary

__all__ = ["Model", "receptive_field", "receptive_fields", "summary", "save_model", "load_model",
           "load_config_file", "normalize_config", "ModelTooLargeError", "set_model_size_limit"]
