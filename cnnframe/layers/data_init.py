"""Data-dependent initialisers: weights computed from a sample of the training images.

A layer's own ``init`` draws from a random generator; the initialisers here need data, so
they run after the model is built and before training:

- `whiten_conv` (``type = "whitening"``): airbench's whitening first convolution (Jordan
  2024, after Coates & Ng 2011).  The filters are the eigenvectors of the covariance of
  the images' kernel-sized patches, each scaled by ``1 / sqrt(eigenvalue + eps)``, in both
  signs: the conv's output channels are the patches in a basis where they are uncorrelated
  with unit variance (up to eps), and the following activation (GELU) sees each direction
  both ways.

In Python::

    from cnnframe.layers.data_init import whiten_conv
    whiten_conv(model, "whiten", images)          # images: float (N, C, H, W), normalised
    model.freeze("whiten.weight")                 # optional: keep the filters fixed

In a training config (`cnnframe train`), a top-level list that runs in order after the
model is built, on a sample of the training images preprocessed as for evaluation
(to_float and normalize; no augmentation)::

    init = [{type = "whitening", node = "whiten", eps = 5e-4, samples = 5000}]

The sample is drawn without replacement with the run's seed, so a run is reproducible
and a resumed run starts from its checkpoint's weights anyway.
"""
import math

import numpy as np

__all__ = ["patch_covariance", "whitening_weights", "whiten_conv", "DATA_INIT_KEYS",
           "check_data_inits", "sample_images", "init_from_data"]

# type -> {key: default} of the config form (besides "type" and "node").
DATA_INIT_KEYS = {"whitening": {"eps": 5e-4, "samples": 5000}}
_CHUNK_VALUES = 2 ** 22  # patch values per chunk (~32 MB in float64)


def _check_images(images, name="images"):
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be a non-empty float array of shape (N, C, H, W), got "
                         f"{x.dtype} shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _pair(value, name):
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v >= 1 for v in pair):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def _patches(x, kernel_size, dilation):
    """(n * OH * OW, C * KH * KW) float64: every stride-1 patch of `x`, in the (C, KH, KW)
    order of a conv weight."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))[..., ::dh, ::dw]
    n, c, oh, ow = win.shape[:4]
    return np.asarray(win.transpose(0, 2, 3, 1, 4, 5), np.float64).reshape(n * oh * ow, -1)


def patch_covariance(images, kernel_size, dilation=1):
    """The covariance (about zero) of the images' kernel-sized patches.

    Every stride-1 position of a ``kernel_size`` window (dilated by `dilation`) gives one
    patch vector in the (C, KH, KW) order of a conv weight; the result is the mean of their
    outer products, as airbench computes it (the data are normalised to mean about zero).

    Parameters
    ----------
    images : ndarray, float (N, C, H, W)
    kernel_size, dilation : int or (int, int)

    Returns
    -------
    ndarray, float64 (D, D) with D = C * KH * KW, symmetric.

    Raises
    ------
    ValueError
        Images that are not a finite float (N, C, H, W) array, or smaller than the window.
    """
    x = _check_images(images)
    k, d = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    if x.shape[2] < span[0] or x.shape[3] < span[1]:
        raise ValueError(f"images of shape {x.shape} are smaller than the patch window "
                         f"{span} (kernel_size {k}, dilation {d})")
    dim = x.shape[1] * k[0] * k[1]
    per_image = (x.shape[2] - span[0] + 1) * (x.shape[3] - span[1] + 1) * dim
    chunk = max(1, _CHUNK_VALUES // per_image)
    total = np.zeros((dim, dim))
    for i in range(0, len(x), chunk):  # in chunks: all patches at once would not fit
        p = _patches(x[i:i + chunk], k, d)
        total += p.T @ p
    count = len(x) * per_image // dim
    cov = total / count
    return (cov + cov.T) / 2


def whitening_weights(images, out_channels, kernel_size, eps=5e-4, dilation=1):
    """Conv filters that whiten the images' patches: eigenvectors / sqrt(eigenvalue + eps).

    With ``k = out_channels // 2``, filter ``i < k`` is the eigenvector of the i-th largest
    eigenvalue of `patch_covariance`, divided by ``sqrt(eigenvalue + eps)``; filter ``k + i``
    is its negative (airbench's layout).  Each eigenvector's sign is fixed so that its
    largest-magnitude entry is positive, so the result does not depend on the LAPACK build.

    Parameters
    ----------
    images : ndarray, float (N, C, H, W)
        Preprocessed as the model sees them (e.g. normalised).
    out_channels : int
        Even, at most ``2 * C * KH * KW``.
    kernel_size, dilation : int or (int, int)
    eps : float > 0
        Added to each eigenvalue: bounds the gain of low-variance directions.

    Returns
    -------
    ndarray, float64 (out_channels, C, KH, KW)

    Raises
    ------
    ValueError
        Bad images, an odd or too large `out_channels`, or eps <= 0.
    """
    x = _check_images(images)
    k = _pair(kernel_size, "kernel_size")
    dim = x.shape[1] * k[0] * k[1]
    if (isinstance(out_channels, bool) or not isinstance(out_channels, (int, np.integer))
            or out_channels < 2 or out_channels % 2 or out_channels > 2 * dim):
        raise ValueError(f"whitening: out_channels must be even, in [2, {2 * dim}] (2 x C x KH x "
                         f"KW = 2 x {x.shape[1]} x {k[0]} x {k[1]}: both signs of each "
                         f"eigenvector), got {out_channels!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 \
            or not math.isfinite(eps):
        raise ValueError(f"whitening: eps must be a finite number > 0, got {eps!r}")
    values, vectors = np.linalg.eigh(patch_covariance(x, k, dilation))
    values, vectors = values[::-1], vectors[:, ::-1]       # largest first
    top = np.argmax(np.abs(vectors), axis=0)
    vectors = vectors * np.sign(vectors[top, np.arange(dim)])
    half = out_channels // 2
    filters = vectors[:, :half].T / np.sqrt(np.maximum(values[:half], 0.0) + eps)[:, None]
    return np.concatenate([filters, -filters]).reshape(out_channels, x.shape[1], *k)


def whiten_conv(model, node, images, eps=5e-4, freeze=False):
    """Set a conv2d node's weights to `whitening_weights` of `images` (in place).

    Parameters
    ----------
    model : cnnframe.Model
    node : str
        The name of a conv2d node with ``groups = 1`` and an even ``out_channels`` of at most
        ``2 * in_channels * KH * KW`` (airbench: kernel 2, 3 -> 24 channels).
    images : ndarray, float (N, C, H, W)
        A sample of the training images, preprocessed as the model sees them (normalised,
        not augmented); airbench uses 5,000.
    eps : float > 0
    freeze : bool
        Also freeze the node's weight (``model.freeze(node + ".weight")``); the bias, if
        any, keeps its value and stays trainable.

    Returns
    -------
    ndarray : the node's weight (its live array).

    Raises
    ------
    ValueError
        An unknown node or one that is not such a conv2d, or bad images (see
        `whitening_weights`); nothing is changed then.
    """
    from cnnframe.layers.conv import Conv2d
    nodes = getattr(model, "nodes", None)
    if not isinstance(nodes, dict):
        raise TypeError(f"whiten_conv: model must be a cnnframe Model, got {type(model).__name__}")
    if node not in nodes:
        raise ValueError(f"whiten_conv: no node {node!r}; nodes: {', '.join(nodes)}")
    layer = nodes[node]
    if not isinstance(layer, Conv2d) or layer.groups != 1:
        raise ValueError(f"whiten_conv: node {node!r} must be a conv2d with groups = 1, got "
                         f"{type(layer).__name__}"
                         + (f" with groups = {layer.groups}" if isinstance(layer, Conv2d) else ""))
    x = _check_images(images)
    if x.shape[1] != layer.in_channels:
        raise ValueError(f"whiten_conv: node {node!r} takes {layer.in_channels} channels, the "
                         f"images have shape {x.shape}")
    w = whitening_weights(x, layer.out_channels, layer.kernel_size, eps, layer.dilation)
    layer.params["weight"][...] = w
    if freeze:
        model.freeze(f"{node}.weight")
    return layer.params["weight"]


# ----------------------------------------------------------------------------- config form

def check_data_inits(specs, where="init"):
    """Validate the config form: a list of tables ``{type, node, ...}``; returns them with
    defaults filled in.

    Raises
    ------
    ValueError
        Naming `where`, the entry and the valid types or keys.
    """
    if isinstance(specs, dict):
        specs = [specs]
    if not isinstance(specs, list):
        raise ValueError(f"{where} must be a list of tables such as [{{type = \"whitening\", "
                         f"node = \"whiten\"}}], got {specs!r}")
    out = []
    for i, spec in enumerate(specs):
        at = f"{where}[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{at} must be a table {{type = ..., node = ...}}, got {spec!r}")
        kind = spec.get("type")
        if kind not in DATA_INIT_KEYS:
            raise ValueError(f"{at}: type must be one of {', '.join(DATA_INIT_KEYS)}, got "
                             f"{kind!r}")
        valid = ["type", "node", *DATA_INIT_KEYS[kind]]
        unknown = [k for k in spec if k not in valid]
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {', '.join(map(repr, unknown))} for "
                             f"{kind!r}; valid keys: {', '.join(valid)}")
        if not isinstance(spec.get("node"), str) or not spec["node"]:
            raise ValueError(f"{at}: needs 'node', the name of the layer to initialise")
        full = {**DATA_INIT_KEYS[kind], **spec}
        eps, samples = full["eps"], full["samples"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
            raise ValueError(f"{at}: eps must be a finite number > 0, got {eps!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"{at}: samples must be an int >= 1, got {samples!r}")
        out.append(full)
    return out


def sample_images(dataset, samples, seed=0, transform=None):
    """Up to `samples` images of `dataset`, drawn without replacement (seeded), in index
    order, passed through `transform` (e.g. to_float + normalize).

    Parameters
    ----------
    dataset : a cnnframe dataset (``images`` uint8 (N, C, H, W)) or an array of images
    samples : int
        All images when the dataset has no more.
    seed : int
    transform : callable ``(batch, rng) -> batch``, optional

    Returns
    -------
    ndarray (n, C, H, W), float32 when a transform made it so.
    """
    images = getattr(dataset, "images", dataset)
    n = len(images)
    if samples >= n:
        idx = np.arange(n)
    else:  # a class-sorted folder would give one class from its first images
        idx = np.sort(np.random.default_rng([int(seed), 21]).choice(n, samples, replace=False))
    x = np.asarray(images[idx])
    return transform(x, None) if transform is not None else x


def init_from_data(model, specs, dataset, transform=None, seed=0):
    """Run the data-dependent initialisers of a training config's ``init`` list, in order.

    Parameters
    ----------
    model : cnnframe.Model
    specs : list of dict
        ``{"type": "whitening", "node": ..., "eps": ..., "samples": ...}`` (see
        `check_data_inits`).
    dataset : the training set (``images`` uint8 (N, C, H, W))
    transform : callable, optional
        What turns uint8 images into the model's inputs (the eval transforms).
    seed : int
        Seeds the choice of sample images.

    Returns
    -------
    list of str
        One line per initialiser, saying what was done.
    """
    done = []
    for i, spec in enumerate(check_data_inits(specs)):
        x = sample_images(dataset, spec["samples"], seed, transform)
        try:
            whiten_conv(model, spec["node"], x, eps=spec["eps"])
        except ValueError as exc:
            raise ValueError(f"init[{i}]: {exc}") from None
        done.append(f"{spec['node']}: whitening from {len(x)} images (eps {spec['eps']:g})")
    return done
