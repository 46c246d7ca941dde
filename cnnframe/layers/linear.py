"""Fully connected layer (numpy matmul, i.e. BLAS sgemm/dgemm)."""
import numpy as np

from cnnframe.layers.base import (Layer, as_shape, check_init, check_int, check_seed, init_array)
from cnnframe.registry import register_layer


@register_layer("linear")
class Linear(Layer):
    """Affine map y = x W^T + b, as torch.nn.Linear.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: whether to add a learned bias.
        init: weight initialiser, default "he_normal": a name of
            cnnframe.layers.INITIALIZERS ("dirac": the identity matrix, "orthogonal"), a
            table such as {type = "constant", value = 0.1}, or a callable (see
            cnnframe.layers.init_array and register_initializer).
        bias_init: bias initialiser, default "zeros"; the same choices (with the
            weight's fans: "lecun_uniform" is PyTorch's default bias).
        seed: int seed of the initialisation (None: fresh entropy).

    Params: weight (out_features, in_features), bias (out_features,).

    Input shape: (N, in_features) (put a flatten layer after convolutions).
    Output shape: (N, out_features).
    """

    def __init__(self, in_features, out_features, bias=True, init="he_normal",
                 bias_init="zeros", seed=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1, "linear")
        self.out_features = check_int(out_features, "out_features", 1, "linear")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"linear: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.init = check_init(init)
        self.bias_init = check_init(bias_init, "bias_init")
        self.seed = check_seed(seed, "linear")
        self.add_param("weight", np.zeros((self.out_features, self.in_features)))
        if self.bias:
            self.add_param("bias", np.zeros(self.out_features))
        self.reset_parameters(self.seed)
        self._x = None

    def reset_parameters(self, seed=None):
        rng = np.random.default_rng(seed)
        w = self.params["weight"]
        w[...] = init_array(w.shape, self.init, rng, self.in_features, self.out_features, w.dtype)
        if self.bias:
            b = self.params["bias"]
            b[...] = init_array(b.shape, self.bias_init, rng, self.in_features,
                                self.out_features, b.dtype)

    def forward(self, x, training=True):
        self._check_input(x, 2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"linear: expects inputs of shape (N, {self.in_features}), "
                             f"got {x.shape}")
        self._x = x
        y = self._buffer("y", (x.shape[0], self.out_features))
        np.matmul(x, self.params["weight"].T, out=y)
        if self.bias:
            y += self.params["bias"]
        return y

    def backward(self, grad_y):
        x = self._x
        if "weight" not in self.frozen_params:  # a frozen weight needs no gradient
            np.matmul(grad_y.T, x, out=self.grads["weight"])
        if self.bias:
            np.sum(grad_y, axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:
            return None
        gx = self._buffer("gx", x.shape)
        return np.matmul(grad_y, self.params["weight"], out=gx)

    def output_shape(self, input_shape):
        shape = as_shape(input_shape, layer="linear")
        if shape != (self.in_features,):
            hint = " (add a flatten layer before it)" if len(shape) > 1 else ""
            raise ValueError(f"linear: expects input shape [in_features={self.in_features}], "
                             f"got {list(shape)}{hint}")
        return (self.out_features,)

    def flops(self, input_shape):
        return 2 * self.in_features * self.out_features

    def receptive_step(self, input_shape):
        return None
