"""Matrix product of the last axis with a learned matrix (ONNX MatMul with a constant)."""
import numpy as np

from cnnframe.layers.base import (Layer, as_shape, check_init, check_int, check_seed, init_array)
from cnnframe.registry import register_layer


@register_layer("matmul_const")
class MatMulConst(Layer):
    """y = x @ weight (+ bias) over the last axis of an input of any rank >= 2.

    torch.nn.Linear applied to (N, L, in_features) exports as such a MatMul; for
    (N, in_features) inputs this is ``linear`` with the weight transposed.

    Args:
        in_features: size of the input's last axis.
        out_features: size of the output's last axis.
        bias: whether to add a learned bias (default false).
        init: weight initialiser (default "he_normal"); the bias starts at zero.
        seed: int seed of the initialisation (None: fresh entropy).

    Params: weight (in_features, out_features) -- ONNX's layout, the transpose of
    linear's -- and bias (out_features,).

    Input shape: (..., in_features).  Output shape: (..., out_features).
    """

    def __init__(self, in_features, out_features, bias=False, init="he_normal", seed=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1, "matmul_const")
        self.out_features = check_int(out_features, "out_features", 1, "matmul_const")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"matmul_const: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.init = check_init(init)
        self.seed = check_seed(seed, "matmul_const")
        self.add_param("weight", np.zeros((self.in_features, self.out_features)))
        if self.bias:
            self.add_param("bias", np.zeros(self.out_features))
        self.reset_parameters(self.seed)
        self._x = None

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        w = self.params["weight"]
        w[...] = init_array(w.shape, self.init, rng, self.in_features, self.out_features, w.dtype)
        if self.bias:
            self.params["bias"].fill(0)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="matmul_const")
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"matmul_const: expects input shape (..., in_features="
                             f"{self.in_features}), got {list(shape)}")
        return (*shape[:-1], self.out_features)

    def forward(self, x, training=True):
        self._check_input(x)
        self.output_shape(x.shape[1:])
        self._x = x
        y = self._buffer("y", (*x.shape[:-1], self.out_features), x.dtype)
        np.matmul(x, self.params["weight"], out=y)
        if self.bias:
            y += self.params["bias"]
        return y

    def backward(self, grad_y):
        x2 = self._x.reshape(-1, self.in_features)
        g2 = grad_y.reshape(-1, self.out_features)
        np.matmul(x2.T, g2, out=self.grads["weight"])
        if self.bias:
            np.sum(g2, axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:
            return None
        gx = self._buffer("gx", self._x.shape, self._x.dtype)
        return np.matmul(grad_y, self.params["weight"].T, out=gx)

    def flops(self, input_shape):
        shape = self.output_shape(input_shape)
        return 2 * int(np.prod(shape[:-1], dtype=np.int64)) * self.in_features * self.out_features

    def receptive_step(self, input_shape):
        return None
