"""Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay."""
import numpy as np

from cnnframe.optim.base import Optimizer, _check_range

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD with the update rule of ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g`` at step ``t``::

        d = g + weight_decay * p                      # L2 penalty added to the gradient
        if momentum:
            b = d                       if t == 1     # buffer starts at the first gradient
            b = momentum * b + (1 - dampening) * d   otherwise
            d = d + momentum * b        if nesterov   # PyTorch's Nesterov form
            d = b                       otherwise
        p -= lr * d

    Args:
        source: object with ``params`` / ``grads`` dicts (a Model or a Layer).
        lr: learning rate, default 0.01.
        momentum: in [0, 1), default 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0), default False.
        weight_decay: L2 coefficient >= 0 added to the gradient, default 0.
        dampening: in [0, 1), default 0.
        no_decay, skip_missing, groups, clip_grad_norm, clip_grad_value: see
            :class:`~cnnframe.optim.base.Optimizer`.

    The update writes into ``p`` in place and allocates nothing per step after the
    first (the momentum buffer and one shared scratch array are reused).
    """

    _hparam_names = ("momentum", "nesterov", "weight_decay", "dampening")

    def __init__(self, source, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 dampening=0.0, no_decay=(), skip_missing=False, groups=(), clip_grad_norm=None,
                 clip_grad_value=None):
        super().__init__(source, lr, weight_decay=weight_decay, no_decay=no_decay,
                         skip_missing=skip_missing, groups=groups, clip_grad_norm=clip_grad_norm,
                         clip_grad_value=clip_grad_value)
        self.momentum = _check_range("momentum", momentum, 0.0, 1.0, hi_open=True)
        self.dampening = _check_range("dampening", dampening, 0.0, 1.0, hi_open=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov=True requires momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    def _buffers_for(self, hparams):
        return ("momentum_buffer",) if hparams["momentum"] else ()

    def _update(self, p, g, state, lr, wd, s):
        mom = self.momentum
        d = g
        if wd:
            np.multiply(p, wd, out=s)
            s += g
            d = s
        if mom:
            buf = state["momentum_buffer"]
            if state["step"] == 1:
                np.copyto(buf, d)
            else:
                buf *= mom
                if self.dampening:
                    np.multiply(d, 1.0 - self.dampening, out=s)   # d is no longer needed
                    buf += s
                else:
                    buf += d
            if self.nesterov:
                # p -= lr * (d + mom * buf), in two passes through the one scratch array
                np.multiply(d, lr, out=s)
                p -= s
                np.multiply(buf, lr * mom, out=s)
                p -= s
                return
            d = buf
        np.multiply(d, lr, out=s)
        p -= s
