"""Adam (with L2 weight decay) and AdamW (decoupled weight decay)."""
import math

import numpy as np

from cnnframe.optim.base import Optimizer, _check_range

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam with bias correction, following ``torch.optim.Adam``.

    For each parameter ``p`` with gradient ``g`` at its step ``t`` (1, 2, ...)::

        g = g + weight_decay * p                       # L2 penalty (coupled)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) if amsgrad else v
        p -= lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    Args:
        source: object with ``params`` / ``grads`` dicts (a Model or a Layer).
        lr: learning rate, default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1), default (0.9, 0.999).
        eps: added to the denominator, > 0, default 1e-8.
        weight_decay: L2 coefficient >= 0 added to the gradient, default 0.
        amsgrad: use the running maximum of ``v`` (Reddi et al.), default False.
        no_decay, skip_missing, groups, clip_grad_norm, clip_grad_value: see
            :class:`~cnnframe.optim.base.Optimizer`.

    Updates are in place; per step nothing is allocated after the first (``exp_avg``,
    ``exp_avg_sq`` and one shared scratch array are reused).
    """

    _hparam_names = ("beta1", "beta2", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, source, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, no_decay=(), skip_missing=False, groups=(), clip_grad_norm=None,
                 clip_grad_value=None):
        super().__init__(source, lr, weight_decay=weight_decay, no_decay=no_decay,
                         skip_missing=skip_missing, groups=groups, clip_grad_norm=clip_grad_norm,
                         clip_grad_value=clip_grad_value)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.beta1 = _check_range("betas[0]", beta1, 0.0, 1.0, hi_open=True)
        self.beta2 = _check_range("betas[1]", beta2, 0.0, 1.0, hi_open=True)
        self.eps = _check_range("eps", eps, 0.0, math.inf, lo_open=True)
        self.amsgrad = bool(amsgrad)

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def _buffers_for(self, hparams):
        if hparams["amsgrad"]:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        return ("exp_avg", "exp_avg_sq")

    def _update(self, p, g, state, lr, wd, s):
        b1, b2, t = self.beta1, self.beta2, state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if wd:
            if self._decoupled:
                p *= 1.0 - lr * wd
            else:
                np.multiply(p, wd, out=s)
                s += g
                g = s
        # m = beta1 * m + (1 - beta1) * g, written as m += (1 - beta1) * (g - m) (PyTorch's lerp)
        # using no temporary: m = beta1 * (m - g) + g
        m -= g
        m *= b1
        m += g
        np.multiply(g, g, out=s)          # g may alias s; it is not needed after this
        s *= 1.0 - b2
        v *= b2
        v += s
        if self.amsgrad:
            v_hat = state["max_exp_avg_sq"]
            np.maximum(v_hat, v, out=v_hat)
        else:
            v_hat = v
        bias1 = 1.0 - b1 ** t
        bias2_sqrt = math.sqrt(1.0 - b2 ** t)
        np.sqrt(v_hat, out=s)
        s *= 1.0 / bias2_sqrt
        s += self.eps
        np.divide(m, s, out=s)
        s *= lr / bias1
        p -= s


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Before the Adam step (which gets the raw gradient) each decayed parameter is
    shrunk: ``p *= 1 - lr * weight_decay``.  Same arguments as :class:`Adam`, but
    ``weight_decay`` defaults to 1e-2.
    """

    _decoupled = True

    def __init__(self, source, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, no_decay=(), skip_missing=False, groups=(), clip_grad_norm=None,
                 clip_grad_value=None):
        super().__init__(source, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, no_decay=no_decay, skip_missing=skip_missing,
                         groups=groups, clip_grad_norm=clip_grad_norm,
                         clip_grad_value=clip_grad_value)
