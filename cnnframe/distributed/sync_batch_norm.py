"""Synchronised batch normalisation: batch statistics over the global batch of all ranks.

`convert_sync_batch_norm(model, comm)` turns every batch_norm1d/2d node of a model into its
synchronised form in place (the parameters, buffers and saved config are unchanged: a model
trained this way saves and loads as a plain batch-norm model).

In training, forward sums, per channel, the count, the sum and the sum of squares of its
input over all ranks (one small blocking Allreduce of 2C + 1 float64), so every rank
normalises with the mean and variance of the global batch, and updates identical running
statistics.  Backward sums the per-channel sum(grad_y) and sum(grad_y * xhat) over the ranks
the same way (the exact gradient of the global batch's loss); the weight and bias gradients
it leaves in ``grads`` are this rank's, averaged afterwards with every other gradient.  With
one rank the result equals plain batch norm up to float rounding.

Cost: two latency-bound Allreduces per batch-norm layer and step, which do not overlap
with computation.
"""
import numpy as np

from cnnframe.layers.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batch_norm"]


class _SyncMixin:
    """Training forward/backward over the global batch (needs ``self.comm`` and
    ``self.node_name``)."""

    def forward(self, x, training=True):
        if not training:
            return super().forward(x, training=False)
        self._check_channels(x)
        x = np.ascontiguousarray(x)
        n, c = x.shape[:2]
        xr = x.reshape(n, c, -1)
        m_local = xr.shape[0] * xr.shape[2]
        stats = np.empty(2 * c + 1)
        stats[:c] = xr.sum(axis=(0, 2), dtype=np.float64)
        stats[c:2 * c] = np.einsum("ncl,ncl->c", xr, xr, dtype=np.float64)
        stats[2 * c] = m_local
        self.comm.allreduce_sum(stats, f"the sync batch norm statistics of {self.node_name!r}")
        m = stats[2 * c]
        if m < 2:
            raise ValueError(f"{self.type_name}: training needs more than one value per "
                             f"channel over all ranks, got input shape {x.shape}")
        mean = stats[:c] / m
        var = np.maximum(stats[c:2 * c] / m - mean * mean, 0.0)
        invstd = 1.0 / np.sqrt(var + self.eps)
        w = self.params["weight"].astype(np.float64)
        b = self.params["bias"].astype(np.float64)
        scale = (invstd * w).astype(self.dtype)
        shift = (b - mean * invstd * w).astype(self.dtype)
        out = self._output_buffer("y", x)
        yr = out.reshape(xr.shape)
        np.multiply(xr, scale[:, None], out=yr)
        yr += shift[:, None]
        if self.fused_relu:
            np.maximum(yr, 0, out=yr)
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        mom = self.momentum
        rm[...] = (1.0 - mom) * rm.astype(np.float64) + mom * mean
        rv[...] = (1.0 - mom) * rv.astype(np.float64) + mom * (m / (m - 1)) * var
        self._cache = (x, mean, invstd, True, out if self.fused_relu else None)
        self._global_count = m
        return out

    def backward(self, grad_y):
        x, mean, invstd, training, relu_y = self._cache
        if not training:
            return super().backward(grad_y)
        n, c = x.shape[:2]
        xr = x.reshape(n, c, -1)
        gy = np.ascontiguousarray(grad_y).reshape(xr.shape)
        if relu_y is not None:
            gy = np.where(relu_y.reshape(xr.shape) > 0, gy, 0).astype(self.dtype)
        # local sums: sum(gy) and sum(gy * xhat) = invstd * (sum(gy * x) - mean * sum(gy))
        sums = np.empty(2 * c)
        sums[:c] = gy.sum(axis=(0, 2), dtype=np.float64)
        sums[c:] = invstd * (np.einsum("ncl,ncl->c", gy, xr, dtype=np.float64)
                             - mean * sums[:c])
        np.copyto(self.grads["bias"], sums[:c])
        np.copyto(self.grads["weight"], sums[c:])
        m_total = self._global_count
        self.comm.allreduce_sum(sums, f"the sync batch norm gradient sums of {self.node_name!r}")
        if not self.needs_input_grad:
            return None
        # gx = w * invstd * (gy - GB / M - xhat * GW / M), as gy * k1 + x * k2 + k3
        w = self.params["weight"].astype(np.float64)
        k1 = w * invstd
        k2 = -k1 * invstd * sums[c:] / m_total
        k3 = -k1 * sums[:c] / m_total - k2 * mean
        out = self._output_buffer("gx", x, grad_y)
        gxr = out.reshape(xr.shape)
        np.multiply(gy, k1.astype(self.dtype)[:, None], out=gxr)
        gxr += xr * k2.astype(self.dtype)[:, None]
        gxr += k3.astype(self.dtype)[:, None]
        return out


class SyncBatchNorm2d(_SyncMixin, BatchNorm2d):
    """`BatchNorm2d` with batch statistics over all ranks (see the module docstring)."""


class SyncBatchNorm1d(_SyncMixin, BatchNorm1d):
    """`BatchNorm1d` with batch statistics over all ranks (see the module docstring)."""


_SYNC_CLASS = {BatchNorm2d: SyncBatchNorm2d, BatchNorm1d: SyncBatchNorm1d}


def convert_sync_batch_norm(model, comm):
    """Make every batch_norm1d/2d node of `model` synchronise over `comm`, in place.

    Returns
    -------
    list of str
        The names of the converted nodes.

    Raises
    ------
    TypeError
        A batch-norm node of a class other than BatchNorm1d/2d (a plugin subclass).
    """
    converted = []
    for name, layer in model.nodes.items():
        if not isinstance(layer, _BatchNorm):
            continue
        if isinstance(layer, _SyncMixin):
            layer.comm = comm
            converted.append(name)
            continue
        cls = _SYNC_CLASS.get(type(layer))
        if cls is None:
            raise TypeError(f"sync_batch_norm: node {name!r} is a {type(layer).__name__}, which "
                            "cannot be synchronised (only BatchNorm1d and BatchNorm2d can)")
        # Same state, synchronised behaviour; get_config still says batch_norm1d/2d.
        layer.__class__ = cls
        layer.comm, layer.node_name = comm, name
        converted.append(name)
    return converted
