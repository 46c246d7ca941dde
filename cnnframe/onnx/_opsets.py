"""The ONNX opsets cnnframe writes, the ONNX IR version each needs, and the onnx import.

Export writes the default ("ai.onnx") domain only.  Ops whose form changed inside the
range are written per opset by the converters (cnnframe.onnx._converters):

- opset 13: Softmax normalises along one axis; Resize takes (X, roi, scales, sizes).
- opset 14: HardSwish exists (before: x * HardSigmoid(x, 1/6, 1/2)).
- opset 17: LayerNormalization exists (before: ReduceMean/Sub/Mul/Sqrt/Div).
- opset 18: ReduceMean/ReduceMax take their axes as an input (before: an attribute);
  Resize takes ``axes`` (before: sizes for every axis, the batch size read with Shape);
  Pad takes ``axes`` (before: pads for every axis, the batch axis's zero).
- opset 19: AveragePool takes dilations (before: a dilated average pool2d is a depthwise
  Conv with ones divided by the window counts).
- opset 20: Gelu exists (before: the Erf or Tanh formula).
"""
import numbers

MIN_OPSET = 13
MAX_OPSET = 21
DEFAULT_OPSET = 17
INSTALL_HINT = "pip install cnnframe[onnx]"


def require_onnx(what="ONNX export"):
    """The `onnx` module, or ImportError saying how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(f"{what} needs the onnx package, an optional dependency of "
                          f"cnnframe: {INSTALL_HINT}") from exc
    return onnx


def check_opset(opset):
    """`opset` as an int in [MIN_OPSET, MAX_OPSET], else TypeError/ValueError naming it."""
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset must be an int from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be from {MIN_OPSET} to {MAX_OPSET} (the opsets cnnframe "
                         f"exports), got {opset}")
    return int(opset)


def ir_version(onnx, opset):
    """The lowest ONNX IR version for `opset`, so older runtimes read the file too."""
    return onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
