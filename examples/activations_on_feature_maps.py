"""ReLU, sigmoid and tanh applied to the same feature map.

A convolution's output (a feature map) measures how strongly each window matches
the filter; the activation decides what of that the next layer sees.
  - ReLU keeps every positive response as it is, so a strong match (say 4.8) and a
    moderate one (2.0) stay far apart, but it maps every negative response to 0.
  - sigmoid squashes into (0, 1) and tanh into (-1, 1): responses above about 2
    all end up near the top and become hard to tell apart, while negative ones
    keep their order.

Run:  python examples/activations_on_feature_maps.py
"""
import numpy as np

from cnnframe.functional import conv2d
from cnnframe.registry import get_layer


def show(name, value):
    """Print `name =` and the array below it, then a blank line."""
    print(f"{name} =")
    print(np.array2string(np.asarray(value), precision=4, suppress_small=True, floatmode="fixed"))
    print()


def main():
    # A 5x8 image: a soft ramp up to a bright band, then a drop back to dark; the rows
    # differ in contrast.  Pixel values lie in [0, 1].
    profile = np.array([0.0, 0.0, 0.2, 0.6, 1.0, 1.0, 0.4, 0.0])
    contrast = np.array([0.2, 0.5, 1.0, 0.8, 0.3])
    image = np.outer(contrast, profile)
    # A vertical-edge filter: right column minus left column, with a gain of 3.
    kernel = 3.0 * np.array([[-1.0, 0.0, 1.0]] * 3)
    show("image", image)
    show("kernel", kernel)

    feature_map = conv2d(image[None, None], kernel[None, None])  # (1, 1, 3, 6)
    show("feature map (before activation)", feature_map[0, 0])

    # The activation layers from the registry, applied to the same feature map.
    activated = {}
    for name in ("relu", "sigmoid", "tanh"):
        layer = get_layer(name)()
        activated[name] = layer.forward(feature_map, training=False)[0, 0]
        show(f"{name}(feature map)", activated[name])

    # Two strong positive responses: how far apart does each activation leave them?
    fm = feature_map[0, 0]
    above_one = fm[fm > 1]
    lo, hi = above_one.min(), above_one.max()
    lo_at, hi_at = np.argwhere(fm == lo)[0], np.argwhere(fm == hi)[0]
    print(f"gap between the responses {lo:.4f} and {hi:.4f}:")
    print(f"  before activation {hi - lo:.4f}")
    for name, act in activated.items():
        print(f"  after {name:<8} {act[tuple(hi_at)] - act[tuple(lo_at)]:.4f}")
    print()

    # Two negative responses (windows unlike the filter).
    below = np.unique(fm[fm < 0])
    neg_lo, neg_hi = below.min(), below.max()
    print(f"two negative responses {neg_lo:.4f} and {neg_hi:.4f} become:")
    for name, act in activated.items():
        a = act[tuple(np.argwhere(fm == neg_lo)[0])]
        b = act[tuple(np.argwhere(fm == neg_hi)[0])]
        print(f"  {name:<8} {a:.4f} and {b:.4f}")
    print()
    print("ReLU keeps strong matches apart but maps every negative response to 0;")
    print("sigmoid and tanh keep the order of negative responses but crowd strong ones together.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
