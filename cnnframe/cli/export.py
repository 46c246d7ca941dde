"""`cnnframe export MODEL out.onnx [--opset N]`: write a model as an ONNX file.

MODEL is a saved model (.cnnf, .safetensors), a run folder of `cnnframe train` (its
model.cnnf), or a model or training config (.toml/.json: freshly initialised weights),
resolved as `cnnframe summary` does.  The ONNX graph takes the model's inputs with a
free batch dimension and computes the model in inference mode (cnnframe.onnx.export).
"""
from cnnframe.onnx._opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET

HELP = "write a trained model (run folder or model file) as an ONNX file"


def _opset(text):
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(f"expected an integer from {MIN_OPSET} to {MAX_OPSET}, "
                                         f"got {text!r}")
    return value


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help=HELP,
        description=HELP + " (inference mode: batch norm with its running statistics, dropout "
        "the identity; inputs and outputs keep the model's names, with a free batch "
        "dimension N). Needs the onnx package: pip install cnnframe[onnx].")
    p.add_argument("model", help="a run folder (runs/NAME), a model file (.cnnf, .safetensors) "
                   "or a model/training config (.toml, .json; random weights)")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--opset", type=_opset, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    p.set_defaults(func=run)
    return p


def run(args):
    from cnnframe.cli.summary import model_from_path
    from cnnframe.onnx import export
    model = model_from_path(args.model)
    path = export(model, args.out, opset=args.opset)
    shapes = ", ".join(f"{k} (N, {', '.join(map(str, v))})" for k, v in model.inputs.items())
    outs = ", ".join(f"{k} (N, {', '.join(map(str, model.shapes[k]))})" for k in model.outputs)
    print(f"wrote {path} (ONNX opset {args.opset}): inputs {shapes}; outputs {outs}")
    return 0
