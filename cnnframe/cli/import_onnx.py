"""`cnnframe import MODEL.onnx OUT.cnnf`: convert an ONNX model to a cnnframe model file.

    cnnframe import resnet.onnx resnet.cnnf
    cnnframe import net.onnx net.cnnf --input-shape 3,224,224   # fix dynamic H and W

Prints the imported model's summary.  The output file is written atomically.
Needs the onnx package (pip install cnnframe[onnx]).
"""
import argparse


def sample_shape(text):
    """An argparse type: one sample's shape without the batch axis, e.g. ``3,224,224``."""
    try:
        dims = tuple(int(p.strip()) for p in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 without the "
                                         f"batch axis, e.g. 3,224,224; got {text!r}")
    return dims


def add_parser(subparsers):
    p = subparsers.add_parser(
        "import", help="convert an ONNX model (.onnx) to a cnnframe model file (.cnnf)",
        description="Import an ONNX model (opsets 6 to 21, the ops PyTorch exports for CNNs) "
                    "as a cnnframe model, write it to OUT (config and weights; load it with "
                    "Model.load or use it with `cnnframe summary`, `evaluate`, `predict`) and "
                    "print its summary.")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("out", help="the cnnframe model file to write (e.g. model.cnnf)")
    p.add_argument("--input-shape", type=sample_shape, default=None, metavar="C,H,W",
                   help="the shape of one sample without the batch axis, for models whose "
                        "inputs have dynamic axes (e.g. 3,224,224; single-input models)")
    p.set_defaults(func=run)


def run(args):
    from cnnframe.onnx.importer import load
    model = load(args.model, input_shape=args.input_shape)
    model.save(args.out)
    print(model.summary())
    print(f"wrote {args.out}")
    return 0
