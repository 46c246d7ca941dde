"""Pictures of convolution filters and feature maps, and of accuracy against training time
(needs matplotlib: ``pip install cnnframe[plot]``).

Two grids and a scatter plot, each returned as a :class:`matplotlib.figure.Figure` or written
straight to a PNG:

- :func:`filter_grid` / :func:`save_filters`: the kernels of a conv layer, one tile per filter
  (RGB when the layer sees 3 channels) or per (filter, input channel) pair.
- :func:`feature_map_grid` / :func:`save_feature_maps`: the output channels of a layer for one
  input, optionally preceded by the input itself; :func:`feature_maps` computes them.
- :func:`accuracy_time_figure` / :func:`save_accuracy_time`: test accuracy against training
  time, one marker per run (e.g. per seed) and a labelled mean per group (e.g. per config).

Figures are built without :mod:`matplotlib.pyplot`, so nothing here touches the global
backend or leaves open windows.  Sizes are exact: a grid of ``nrows`` x ``ncols`` tiles of
``tile_px`` pixels is a PNG of ``ncols * tile_px`` x ``nrows * tile_px + header`` pixels, where
``header`` is :data:`TITLE_PX` with a title and 0 without.  Tiles are laid out row by row;
unless given, ``ncols = ceil(sqrt(number of tiles))``.
"""
import math
from pathlib import Path

import numpy as np

from cnnframe._files import atomic_write

__all__ = ["filter_grid", "feature_map_grid", "feature_maps", "save_figure", "save_filters",
           "save_feature_maps", "accuracy_time_figure", "save_accuracy_time", "grid_shape",
           "TITLE_PX"]

TITLE_PX = 24   # height in pixels of the title band above the tiles
DPI = 100       # figures are laid out in pixels at this resolution


def _matplotlib():
    """Import matplotlib's Figure and Agg canvas, or explain how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("cnnframe.viz draws with matplotlib, which is not installed; "
                          "install it with `pip install cnnframe[plot]` "
                          "(or `pip install matplotlib`)") from exc
    return Figure, FigureCanvasAgg


def grid_shape(n_tiles, ncols=None):
    """(nrows, ncols) of the grid holding `n_tiles` tiles row by row.

    ncols defaults to ceil(sqrt(n_tiles)) and is capped at n_tiles.
    """
    n_tiles = int(n_tiles)
    if n_tiles < 1:
        raise ValueError(f"a grid needs at least one tile, got n_tiles={n_tiles}")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n_tiles))
    ncols = int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n_tiles)
    return math.ceil(n_tiles / ncols), ncols


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _weight_of(weight):
    """The (F, C, KH, KW) kernel array of a conv layer, or the array itself."""
    params = getattr(weight, "params", None)
    if params is not None:
        if "weight" not in params:
            raise ValueError(f"{type(weight).__name__} has no 'weight' parameter "
                             f"(its params are {sorted(params)})")
        weight = params["weight"]
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError("weight must be a conv kernel of shape (F, C, KH, KW) with no empty "
                         f"dimension (or a layer holding one), got shape {w.shape}")
    return w


def _figure(nrows, ncols, tile_px, title):
    Figure, FigureCanvasAgg = _matplotlib()
    header = TITLE_PX if title else 0
    width, height = ncols * tile_px, nrows * tile_px + header
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    if title:
        # Shrink the font until the title fits the width (about 0.6 em per character).
        fits = width / (0.6 * len(title) * DPI / 72)
        fig.text(0.5, 1 - (header / 2) / height, title, ha="center", va="center",
                 fontsize=max(4.0, min(11.0, header * 0.45, fits)))
    pad = max(1, tile_px // 24)  # a thin white gap between tiles

    def tile_axes(index):
        r, c = divmod(index, ncols)
        ax = fig.add_axes([(c * tile_px + pad) / width,
                           1 - (header + (r + 1) * tile_px - pad) / height,
                           (tile_px - 2 * pad) / width, (tile_px - 2 * pad) / height])
        ax.set_axis_off()
        return ax

    return fig, tile_axes


def filter_grid(weight, *, rgb=None, ncols=None, max_tiles=256, tile_px=48, title=None,
                cmap="RdBu_r"):
    """A grid picture of a conv layer's kernels.

    Parameters
    ----------
    weight : ndarray, shape (F, C, KH, KW), or a layer with ``params["weight"]``
    rgb : bool, optional
        Draw each filter as one colour tile (its 3 input channels as R, G, B, scaled to
        [0, 1] per filter).  Default: True when C == 3.
    ncols : int, optional
        Tiles per row.  Default: C when drawing one tile per (filter, channel) with
        1 < C <= 16 (a row per filter), else ceil(sqrt(number of tiles)).
    max_tiles : int
        Draw at most this many tiles (the first filters / channels).
    tile_px : int
        Side of each square tile in pixels.
    title : str, optional
    cmap : str
        Colormap of the single-channel tiles; one symmetric scale (-m, m), with m the
        largest ``|weight|`` drawn, so colours compare across tiles and show the sign.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        Without matplotlib (``pip install cnnframe[plot]``).
    ValueError
        On a weight that is not 4-D, or rgb=True with C != 3.
    """
    w = _weight_of(weight)
    tile_px = _positive_int(tile_px, "tile_px")
    max_tiles = _positive_int(max_tiles, "max_tiles")
    f, c = w.shape[:2]
    if rgb is None:
        rgb = c == 3
    if rgb and c != 3:
        raise ValueError(f"rgb=True needs kernels with 3 input channels, got weight shape {w.shape}")
    if rgb:
        tiles = [k.transpose(1, 2, 0) for k in w[:max_tiles]]
        lo = np.array([t.min() for t in tiles])[:, None, None, None]
        span = np.array([np.ptp(t) for t in tiles])[:, None, None, None]
        tiles = list((np.array(tiles) - lo) / np.where(span > 0, span, 1.0))
        default_cols = None
    else:
        tiles = [w[i, j] for i in range(f) for j in range(c)][:max_tiles]
        default_cols = c if 1 < c <= 16 else None
    nrows, ncols = grid_shape(len(tiles), ncols if ncols is not None else default_cols)
    fig, tile_axes = _figure(nrows, ncols, tile_px, title)
    scale = max(float(np.max(np.abs(tiles))), 1e-12)
    for i, tile in enumerate(tiles):
        ax = tile_axes(i)
        if rgb:
            ax.imshow(np.clip(tile, 0, 1), interpolation="nearest")
        else:
            ax.imshow(tile, cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest")
    return fig


def feature_map_grid(maps, *, image=None, ncols=None, max_tiles=256, tile_px=64, title=None,
                     cmap="viridis", labels=True):
    """A grid picture of feature maps, each scaled to its own range.

    Parameters
    ----------
    maps : ndarray, shape (C, H, W) or (1, C, H, W)
    image : ndarray, optional
        The input they came from, drawn as the first tile: (H, W), (1, H, W), (3, H, W)
        (channels first, any range; scaled to [0, 1]) or (H, W, 3).
    ncols, max_tiles, tile_px, title : as in :func:`filter_grid` (ncols defaults to
        ceil(sqrt(number of tiles)); the image counts as a tile)
    cmap : str
    labels : bool
        Write the channel number in the corner of each map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 3 or 0 in m.shape:
        raise ValueError(f"maps must have shape (C, H, W) or (1, C, H, W), got {np.shape(maps)}")
    tile_px = _positive_int(tile_px, "tile_px")
    max_tiles = _positive_int(max_tiles, "max_tiles")
    picture = None if image is None else _as_picture(image)
    n_maps = min(m.shape[0], max_tiles - (picture is not None))
    n_tiles = n_maps + (picture is not None)
    if n_maps < 1:
        raise ValueError(f"max_tiles={max_tiles} leaves no room for a feature map")
    nrows, ncols = grid_shape(n_tiles, ncols)
    fig, tile_axes = _figure(nrows, ncols, tile_px, title)
    index = 0
    if picture is not None:
        ax = tile_axes(index)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        if labels:
            _corner_label(ax, "input", tile_px)
        index += 1
    for ch in range(n_maps):
        ax = tile_axes(index + ch)
        ax.imshow(m[ch], cmap=cmap, interpolation="nearest")
        if labels:
            _corner_label(ax, str(ch), tile_px)
    return fig


def _corner_label(ax, text, tile_px):
    ax.text(0.03, 0.97, text, transform=ax.transAxes, ha="left", va="top", color="white",
            fontsize=max(5, min(8, tile_px // 8)),
            bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0))


def _as_picture(image):
    """An input image as (H, W) gray or (H, W, 3) RGB in [0, 1]."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3):  # channels first (cnnframe's layout) wins ties
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)) or 0 in a.shape:
        raise ValueError("image must be (H, W), (1 or 3, H, W) or (H, W, 1 or 3), "
                         f"got shape {np.shape(image)}")
    lo, span = a.min(), np.ptp(a)
    return (a - lo) / span if span > 0 else np.zeros_like(a)


def feature_maps(source, x, node=None):
    """The output channels of a layer, or of one node of a model, for one input, as (C, H, W).

    Parameters
    ----------
    source : a Layer (anything with ``forward(x, training=False)``), or a
        :class:`cnnframe.Model` together with `node`
    x : ndarray, shape (C_in, H, W) or (1, C_in, H, W); for a model with several
        inputs, a dict input name -> such an array
    node : str, optional
        For a model: the node whose output to return.  Only the nodes it depends on
        are run, in inference mode (their cached forward state is overwritten).

    Returns
    -------
    ndarray, shape (C, OH, OW)
    """
    if node is None:
        if hasattr(source, "node_inputs"):
            raise ValueError("feature_maps: pass node=<name> to pick a node of the model; "
                             f"nodes: {', '.join(source.nodes)}")
        y = source.forward(_one_image(x, "x"), training=False)
        return np.asarray(y)[0]
    if not hasattr(source, "node_inputs"):
        raise TypeError(f"feature_maps: node={node!r} needs a cnnframe.Model, got "
                        f"{type(source).__name__}")
    if node not in source.nodes:
        raise ValueError(f"feature_maps: unknown node {node!r}; nodes: {', '.join(source.nodes)}")
    names = list(source.inputs)
    if isinstance(x, dict):
        values = {k: _one_image(v, f"x[{k!r}]") for k, v in x.items()}
    elif len(names) == 1:
        values = {names[0]: _one_image(x, "x")}
    else:
        raise TypeError(f"feature_maps: the model has inputs {names}; pass a dict name -> array")
    for k in list(values):
        values[k] = values[k].astype(source.dtype, copy=False)

    def value(name):  # depth-first over the node's ancestors only
        if name not in values:
            layer = source.nodes[name]
            ins = [value(i) for i in source.node_inputs[name]]
            values[name] = layer.forward(ins if layer.num_inputs is None else ins[0],
                                         training=False)
        return values[name]

    y = np.asarray(value(node))
    if y.ndim != 4:
        raise ValueError(f"feature_maps: node {node!r} outputs shape {y.shape[1:]}, not "
                         "feature maps (C, H, W)")
    return y[0]


def _one_image(x, name):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"{name} must be one image (C, H, W) or (1, C, H, W), got shape {x.shape}")
    return x


def save_figure(fig, path, dpi=DPI):
    """Write `fig` as a PNG at `path` atomically (temporary file + os.replace); returns Path.

    Parent folders are created.  At the default dpi the PNG has the pixel size the grid
    functions laid out.
    """
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi,
                                             facecolor=fig.get_facecolor()))
    return path


def save_filters(weight, path, **kwargs):
    """:func:`filter_grid` written to a PNG at `path`; returns the Path."""
    return save_figure(filter_grid(weight, **kwargs), path)


def save_feature_maps(maps, path, **kwargs):
    """:func:`feature_map_grid` written to a PNG at `path`; returns the Path."""
    return save_figure(feature_map_grid(maps, **kwargs), path)


def _run_point(point, index):
    """(label, minutes, accuracy) of one run, checked."""
    try:
        label, minutes, accuracy = point
    except (TypeError, ValueError):
        raise ValueError(f"points[{index}] must be a (label, minutes, accuracy) triple, got "
                         f"{point!r}") from None
    minutes, accuracy = float(minutes), float(accuracy)
    if not (math.isfinite(minutes) and minutes >= 0):
        raise ValueError(f"points[{index}] ({label!r}): minutes must be a finite number >= 0, "
                         f"got {minutes}")
    if not 0 <= accuracy <= 1:
        raise ValueError(f"points[{index}] ({label!r}): accuracy must be a fraction in [0, 1], "
                         f"got {accuracy}")
    return str(label), minutes, accuracy


def accuracy_time_figure(points, *, title=None, width_px=800, height_px=500,
                         xlabel="training time (minutes)", ylabel="test accuracy (%)"):
    """A scatter plot of test accuracy against training time.

    Each run is a small marker; each group of runs with the same label (e.g. the seeds of
    one config) gets one colour, a large marker at the mean of its runs' times and
    accuracies, and the label with that mean written beside it.

    Parameters
    ----------
    points : iterable of (str, float, float)
        One (label, minutes, accuracy) triple per run; accuracy is a fraction in [0, 1]
        (drawn in percent).  Groups appear in the order of their first run.
    title : str, optional
    width_px, height_px : int
        Size of the PNG :func:`save_figure` writes, in pixels.
    xlabel, ylabel : str

    Returns
    -------
    matplotlib.figure.Figure
        One axes; per group (in order) a scatter of its runs, then a scatter of its mean.

    Raises
    ------
    ImportError
        Without matplotlib (``pip install cnnframe[plot]``).
    ValueError
        With no points, a point that is not a triple, minutes that are negative or not
        finite, or an accuracy outside [0, 1].
    """
    runs = [_run_point(p, i) for i, p in enumerate(points)]
    if not runs:
        raise ValueError("accuracy_time_figure needs at least one (label, minutes, accuracy) "
                         "point, got none")
    width_px = _positive_int(width_px, "width_px")
    height_px = _positive_int(height_px, "height_px")
    groups = {}
    for label, minutes, accuracy in runs:
        groups.setdefault(label, []).append((minutes, 100 * accuracy))
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for colour, (label, xy) in zip(colours, groups.items()):
        xy = np.array(xy)
        mean_x, mean_y = xy.mean(axis=0)
        ax.scatter(xy[:, 0], xy[:, 1], s=18, color=colour, alpha=0.6, linewidths=0)
        ax.scatter([mean_x], [mean_y], s=90, color=colour, edgecolors="black", linewidths=0.8,
                   label=label, zorder=3)
        runs_note = f", mean of {len(xy)}" if len(xy) > 1 else ""
        ax.annotate(f"{label}\n{mean_y:.2f}% in {mean_x:.1f} min{runs_note}", (mean_x, mean_y),
                    xytext=(8, -4), textcoords="offset points", fontsize=8, va="top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.3, y=0.15)  # room for the labels right of the rightmost mean
    ax.set_xlim(left=0)  # training time from zero: the lengths of runs compare by eye
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_accuracy_time(points, path, **kwargs):
    """:func:`accuracy_time_figure` written to a PNG at `path`; returns the Path."""
    return save_figure(accuracy_time_figure(points, **kwargs), path)
