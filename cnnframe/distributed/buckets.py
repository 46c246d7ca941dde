"""Gradient averaging in buckets, started while backward is still running.

The parameters are grouped, in the order backward produces their gradients (output layer
first), into buckets of about ``bucket_bytes``.  As soon as the last layer of a bucket has
finished its backward (`Model.backward`'s ``layer_done`` hook), its gradients are copied
into one flat buffer of the model's dtype (float32) and a non-blocking ``Iallreduce`` (sum)
is started; the remaining layers' backward runs meanwhile.  `finish` waits for the buckets
in order and writes sum / world size back into every layer's ``grads``.

The buckets, their order and their sizes depend only on the model, so every rank issues the
same collectives in the same order and MPI reduces each element in the same order in every
run: a run repeated at the same world size is bit-identical.
"""
import numpy as np

__all__ = ["GradientReducer", "DEFAULT_BUCKET_BYTES"]

DEFAULT_BUCKET_BYTES = 1 << 20


class _Bucket:
    def __init__(self, entries, dtype):
        # entries: (node name, param key, offset, size, shape)
        self.entries = entries
        self.nodes = {e[0] for e in entries}
        self.size = sum(e[3] for e in entries)
        self.flat = np.zeros(self.size, dtype)
        self.remaining = set(self.nodes)
        self.request = None


def _backward_order(model):
    """Node names in the order `Model.backward` visits them (reverse topological)."""
    order = getattr(model, "_order", None)
    return list(reversed(order if order is not None else list(model.nodes)))


class GradientReducer:
    """Averages a model's gradients over the ranks of `comm`, overlapping with backward.

    Parameters
    ----------
    model : cnnframe.Model
    comm : cnnframe.distributed.comm.Communicator
    bucket_bytes : int
        Target bucket size; a parameter larger than this gets a bucket of its own.
    buffer_nodes : iterable of str
        Nodes whose buffers (batch-norm running statistics computed from this rank's
        batch) are averaged too, in one extra small bucket started with backward.

    Notes
    -----
    Use as ``reducer.start(); model.backward(g, layer_done=reducer.layer_done);
    reducer.finish()``.  With one rank nothing is copied and the gradients are left as
    they are.
    """

    def __init__(self, model, comm, bucket_bytes=DEFAULT_BUCKET_BYTES, buffer_nodes=()):
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
                or bucket_bytes < 1:
            raise ValueError(f"GradientReducer: bucket_bytes must be an int >= 1, got "
                             f"{bucket_bytes!r}")
        self.model, self.comm = model, comm
        self.bucket_bytes = int(bucket_bytes)
        self.dtype = np.dtype(getattr(model, "dtype", np.float32))
        self.buckets = self._plan(model)
        self._node_buckets = {}  # node -> the buckets holding its parameters, in plan order
        for b in self.buckets:
            for n in sorted(b.nodes):
                self._node_buckets.setdefault(n, []).append(b)
        self.buffer_entries = []
        offset = 0
        for name in buffer_nodes:
            for key, buf in model.nodes[name].buffers.items():
                self.buffer_entries.append((name, key, offset, buf.size, buf.shape))
                offset += buf.size
        self.buffer_flat = np.zeros(offset, self.dtype)
        self._buffer_request = None
        self._active = False

    def _plan(self, model):
        buckets, entries, offset = [], [], 0
        itemsize = self.dtype.itemsize
        for name in _backward_order(model):
            layer = model.nodes[name]
            for key, grad in layer.grads.items():
                if offset and (offset + grad.size) * itemsize > self.bucket_bytes:
                    buckets.append(_Bucket(entries, self.dtype))
                    entries, offset = [], 0
                entries.append((name, key, offset, grad.size, grad.shape))
                offset += grad.size
        if entries:
            buckets.append(_Bucket(entries, self.dtype))
        return buckets

    @property
    def bucket_sizes(self):
        """Bytes of each bucket, in the order they are reduced."""
        return [b.size * self.dtype.itemsize for b in self.buckets]

    def start(self):
        """Begin a step: reset the buckets; start averaging the buffers (final after forward)."""
        if self.comm.size == 1:
            return
        for b in self.buckets:
            b.remaining = set(b.nodes)
            b.request = None
        if self.buffer_entries:
            nodes = self.model.nodes
            for name, key, off, size, _ in self.buffer_entries:
                self.buffer_flat[off:off + size] = nodes[name].buffers[key].ravel()
            self._buffer_request = self.comm.iallreduce_sum(self.buffer_flat)
        self._active = True

    def layer_done(self, name):
        """`Model.backward`'s hook: start the bucket whose last layer `name` was."""
        if not self._active:
            return
        for bucket in self._node_buckets.get(name, ()):
            bucket.remaining.discard(name)
            if not bucket.remaining and bucket.request is None:
                self._launch(bucket)
        # MPICH progresses non-blocking collectives only inside MPI calls.
        self.comm.poke([b.request for b in self.buckets if b.request is not None])

    def _launch(self, bucket):
        nodes = self.model.nodes
        for name, key, off, size, _ in bucket.entries:
            bucket.flat[off:off + size] = nodes[name].grads[key].ravel()
        bucket.request = self.comm.iallreduce_sum(bucket.flat)

    def finish(self):
        """Wait for every bucket (in order) and write the averaged gradients back."""
        if not self._active:
            return
        self._active = False
        for b in self.buckets:  # a node whose backward did not run: still reduce, in order
            if b.request is None:
                self._launch(b)
        scale = self.dtype.type(1.0 / self.comm.size)
        nodes = self.model.nodes
        if self._buffer_request is not None:
            self.comm.wait([self._buffer_request], "averaging batch-norm running statistics")
            self._buffer_request = None
            for name, key, off, size, shape in self.buffer_entries:
                np.multiply(self.buffer_flat[off:off + size].reshape(shape), scale,
                            out=nodes[name].buffers[key])
        for i, b in enumerate(self.buckets):
            self.comm.wait([b.request], f"the gradient Allreduce of bucket {i + 1} of "
                           f"{len(self.buckets)}")
            b.request = None
            for name, key, off, size, shape in b.entries:
                np.multiply(b.flat[off:off + size].reshape(shape), scale,
                            out=nodes[name].grads[key])
