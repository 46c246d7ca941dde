"""`cnnframe summary PATH`: print the summary table of a model.

PATH is a model config (.toml/.json), a training config (the model of its [model]
section, built as `cnnframe train` builds it), a saved model (.cnnf/.npz) or a run
folder written by `cnnframe train` (its model.cnnf).
"""
import os


def add_parser(subparsers):
    p = subparsers.add_parser(
        "summary", help="print a model's summary table from a config or saved model",
        description="Build a model from a .toml/.json model config or training config (its "
                    "[model] section), or load a saved model file (.cnnf/.npz) or the model of "
                    "a run folder, and print node, type, output shape, parameters, forward "
                    "FLOPs and receptive field.")
    p.add_argument("path", help="model config or training config (.toml, .json), saved model "
                                "(.cnnf, .npz) or run folder")
    p.set_defaults(func=run)


def model_from_path(path):
    """The Model that `path` describes (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If `path` (or a run folder's model file) does not exist.
    ValueError
        For an invalid config, a damaged model file or a training checkpoint; the message
        names the file.
    """
    from cnnframe.graph import Model
    from cnnframe.graph.config import load_config_file

    path = os.fspath(path)
    if os.path.isdir(path):
        from cnnframe.train.runs import MODEL_FILE
        model_file = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE}; expected a run "
                                    "folder of `cnnframe train`, a config or a model file")
        return Model.load(model_file)
    if os.path.splitext(path)[1].lower() not in (".toml", ".json"):
        from cnnframe.train.runs import checkpoint_is_not_a_model, is_checkpoint
        if is_checkpoint(path):
            raise checkpoint_is_not_a_model(path)
        return Model.load(path)
    raw = load_config_file(path)
    # A model config never has a "model" key; a training config always has one.
    if not (isinstance(raw, dict) and "model" in raw):
        return Model.from_file(path)
    from cnnframe.train.config import load_config
    from cnnframe.train.runs import build_model
    try:
        return build_model(load_config(path))
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(path) else f"{path}: {msg}") from None


def run(args):
    print(model_from_path(args.path).summary())
    return 0
