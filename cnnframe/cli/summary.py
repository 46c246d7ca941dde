"""`cnnframe summary PATH`: print the summary table of a model config or saved model."""
import os


def add_parser(subparsers):
    p = subparsers.add_parser(
        "summary", help="print a model's summary table from a config or saved model",
        description="Build a model from a .toml/.json config (or load a saved model file such "
                    "as .cnnf/.npz) and print node, type, output shape, parameters, forward "
                    "FLOPs and receptive field.")
    p.add_argument("path", help="model config (.toml, .json) or saved model (.cnnf, .npz)")
    p.set_defaults(func=run)


def run(args):
    from cnnframe.graph import Model
    ext = os.path.splitext(args.path)[1].lower()
    model = Model.from_file(args.path) if ext in (".toml", ".json") else Model.load(args.path)
    print(model.summary())
    return 0
