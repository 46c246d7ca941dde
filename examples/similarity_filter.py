"""A convolution filter as a similarity detector.

Each output of a convolution is the sum of an input window times the filter,
elementwise: it is large when the window looks like the filter.  Pixel values are
scaled to [0, 1] by dividing by 255, as is usual when images are loaded.

  1. A right-column filter responds with 3 to a window whose right column is bright
     and with about 0.058 to the mirrored window.
  2. A horizontal-bar filter gives the same response to a bar and to an all-white
     window; a second, all-ones filter tells those two apart.  A layer has many
     filters, so the next layer sees both responses.
  3. Slid over a whole image, the bar filter's feature map shows where the bar is.

Run:  python examples/similarity_filter.py
"""
import numpy as np

from cnnframe.functional import conv2d


def show(name, value, precision=4):
    """Print `name =` and the array below it, then a blank line."""
    print(f"{name} =")
    print(np.array2string(np.asarray(value), precision=precision, suppress_small=True))
    print()


def main():
    # Windows as 0..255 pixel values; the network sees them divided by 255.
    windows_255 = {
        "right-bright": [[5, 5, 255], [5, 5, 255], [5, 5, 255]],
        "left-bright": [[255, 255, 5], [255, 255, 5], [255, 255, 5]],
        "bar": [[0, 0, 0], [255, 255, 255], [0, 0, 0]],
        "white": [[255, 255, 255], [255, 255, 255], [255, 255, 255]],
    }
    filters = {
        "right-column": [[0, 0, 1], [0, 0, 1], [0, 0, 1]],
        "horizontal-bar": [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        "all-ones": [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    }
    for name, w in windows_255.items():
        show(f"window {name} (x 1/255)", np.array(w))
    for name, f in filters.items():
        show(f"filter {name}", np.array(f))

    # One conv2d call does it all: the windows are a batch of N one-channel 3x3 images
    # (N, 1, 3, 3), the filters one rank-4 tensor (F, 1, 3, 3); each 3x3 filter fits a
    # 3x3 window exactly once, so the output (N, F, 1, 1) is one response per pair.
    x = np.array(list(windows_255.values()), dtype=np.float64)[:, None] / 255.0
    w = np.array(list(filters.values()), dtype=np.float64)[:, None]
    responses = conv2d(x, w)[:, :, 0, 0]

    print("responses (rows: windows, columns: filters) =")
    print(" " * 14 + "".join(f"{name:>16}" for name in filters))
    for name, row in zip(windows_255, responses):
        print(f"{name:<14}" + "".join(f"{v:>16.4f}" for v in row))
    print()

    r = dict(zip(windows_255, responses))
    print(f"right-column filter: right-bright window {r['right-bright'][0]:.4f}, "
          f"opposite window {r['left-bright'][0]:.4f}")
    print(f"horizontal-bar filter cannot tell bar from white: "
          f"{r['bar'][1]:.4f} vs {r['white'][1]:.4f}")
    print(f"all-ones filter can: {r['bar'][2]:.4f} vs {r['white'][2]:.4f}")
    print()

    # Slide the bar filter over a 7x7 image with a bright bar on row 4: the feature map
    # is brightest where the filter sits centred on the bar.
    image = np.zeros((7, 7))
    image[4, 1:6] = 1.0
    feature_map = conv2d(image[None, None], w[1:2])[0, 0]
    show("image with a bar on row 4", image, precision=0)
    show("horizontal-bar feature map", feature_map, precision=0)
    row, col = np.unravel_index(np.argmax(feature_map), feature_map.shape)
    print(f"strongest response at output row {row}, column {col} "
          f"(window rows {row}..{row + 2}, columns {col}..{col + 2})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
