"""Filters and feature maps of a small trained CNN, drawn with cnnframe.viz.

A few epochs on the synthetic Shapes set (bars, squares, circles, ... in 8 classes)
reach about 90% test accuracy.  In so short a run the first-layer 5x5 filters still
carry much of their random initialisation, so the script draws both the filters and
what training added to them (learned minus initial), where smooth edge and colour
detectors show up.  For one test image it writes:
  <tag>_conv1_filters.png   the 16 first-layer filters (as RGB tiles)
  <tag>_conv1_change.png    learned minus initial filters
  <tag>_relu1_maps.png      the input and its 16 feature maps after ReLU
  <tag>_input.png           the input image itself
  <tag>_model.cnnf          the trained model (cnnframe.Model.load reads it back)
and prints, for each feature map, how strongly and how widely it responds.
When a class-per-folder CIFAR-10 copy is present (--cifar-root, else $CNNFRAME_DATA: the
copy or a folder holding cifar10-jpeg/), it does the same for a net trained for about a
minute on a subset of CIFAR-10; otherwise it says so and skips.

Run:  python examples/feature_maps.py [--out DIR] [--cifar-root DIR] [--quick]
(--quick, or CNNFRAME_EXAMPLES_QUICK=1: a few seconds of training, for tests.)
Needs matplotlib for the pictures (pip install cnnframe[plot]) and Pillow for CIFAR-10.
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

import cnnframe
from cnnframe import viz
from cnnframe.data import ArrayDataset, DataLoader, Shapes
from cnnframe.optim import Adam

# Where this example looked before $CNNFRAME_DATA; used only when that is unset and it exists.
FALLBACK_CIFAR_ROOT = Path("/work/shared/datasets/cifar10-jpeg")


def build_model(n_classes, size, seed=0):
    """conv5x5(16) relu pool - conv3x3(32) relu pool - conv3x3(64) relu - global avg - linear."""
    def conv(name, cin, cout, k):
        return {"type": "conv2d", "name": name, "in_channels": cin, "out_channels": cout,
                "kernel_size": k, "padding": k // 2}
    layers = [conv("conv1", 3, 16, 5), {"type": "relu", "name": "relu1"},
              {"type": "max_pool2d", "name": "pool1", "kernel_size": 2},
              conv("conv2", 16, 32, 3), {"type": "relu", "name": "relu2"},
              {"type": "max_pool2d", "name": "pool2", "kernel_size": 2},
              conv("conv3", 32, 64, 3), {"type": "relu", "name": "relu3"},
              {"type": "global_avg_pool2d", "name": "gap"},
              {"type": "linear", "name": "fc", "in_features": 64, "out_features": n_classes}]
    return cnnframe.Model.from_config({"input_shape": [3, size, size], "seed": seed,
                                       "layers": layers})


def train(model, train_set, test_set, epochs, lr=3e-3, seed=0):
    """Adam on softmax cross-entropy with the Trainer; returns the test accuracy."""
    trainer = cnnframe.Trainer(model, "cross_entropy", Adam(model, lr=lr), progress=False,
                               log=lambda line: print("  " + line))
    trainer.fit(DataLoader(train_set, 64, seed=seed), epochs=epochs)
    return trainer.evaluate(DataLoader(test_set, 256, shuffle=False))["accuracy"]


def save_png(image_chw, path):
    """A uint8 (3, H, W) image as a PNG file (lossless), written atomically."""
    from PIL import Image
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).save(tmp, format="PNG")
    os.replace(tmp, path)


def pictures(model, initial_filters, image_u8, classes, tag, out):
    """Write the filter and feature-map pictures for one image; print the maps' numbers."""
    x = image_u8.astype(np.float32) / 255  # the same scaling the DataLoader applies
    probs = model.forward(x[None], training=False)[0]
    print(f"  predicted class of the example image: {classes[int(np.argmax(probs))]}")
    maps = viz.feature_maps(model, x, node="relu1")  # (16, H, W) after conv1 + ReLU
    learned = model.nodes["conv1"].params["weight"]
    change = learned - initial_filters
    print(f"  conv1 filters moved by {np.linalg.norm(change) / np.linalg.norm(initial_filters):.0%}"
          " of their initial size")
    paths = {
        "filters": viz.save_filters(learned, out / f"{tag}_conv1_filters.png", tile_px=64,
                                    title=f"{tag}: conv1 filters"),
        "change": viz.save_filters(change, out / f"{tag}_conv1_change.png", tile_px=64,
                                   title=f"{tag}: learned - initial"),
        "maps": viz.save_feature_maps(maps, out / f"{tag}_relu1_maps.png", image=x,
                                      title=f"{tag}: input and relu1 feature maps"),
    }
    save_png(image_u8, out / f"{tag}_input.png")
    model.save(out / f"{tag}_model.cnnf")
    for path in paths.values():
        print(f"  wrote {path}")
    print(f"  wrote {out / f'{tag}_input.png'} and {out / f'{tag}_model.cnnf'}")
    print()
    # Each map is one filter's view of the image: where (and how strongly) it matched.
    print(f"{tag} relu1 feature maps (channel, max, mean, fraction > 0) =")
    for c, m in enumerate(maps):
        print(f"  {c:>2}  {m.max():8.4f}  {m.mean():8.4f}  {np.mean(m > 0):6.3f}")
    print()
    print(f"  silent maps (all zero after ReLU): {int(np.sum(maps.max(axis=(1, 2)) <= 0))}"
          f" of {len(maps)}")
    print()


def find_cifar_copy(cifar_root=None, environ=None, fallback=FALLBACK_CIFAR_ROOT):
    """The class-per-folder CIFAR-10 copy to train on: (folder, None) or (None, why not).

    Looked for at `cifar_root` (--cifar-root), else at $CNNFRAME_DATA, else at `fallback`
    when that exists; each may be the copy itself or hold it in cifar10-jpeg/ or cifar10/.
    """
    from cnnframe.data.cifar import find_cifar10_image_folder
    environ = os.environ if environ is None else environ
    if cifar_root:
        where = Path(cifar_root)
    elif environ.get("CNNFRAME_DATA"):
        where = Path(environ["CNNFRAME_DATA"])
    elif fallback.is_dir():
        where = fallback
    else:
        return None, ("$CNNFRAME_DATA is not set and no --cifar-root given: point either at a "
                      "class-per-folder copy (train/<class>/*.jpg and test/<class>/*.jpg)")
    folder = find_cifar10_image_folder(where)
    if folder is None or not (folder / "train").is_dir() or not (folder / "test").is_dir():
        return None, (f"no JPEG copy at {where} (expected train/<class>/*.jpg and "
                      "test/<class>/*.jpg there or in cifar10-jpeg/; see --cifar-root)")
    return folder, None


def load_cifar_subset(root, per_class_train, per_class_test):
    """The first images of every class from the JPEG copy, decoded (no cache needed)."""
    from cnnframe.data.image_folder import decode_images, scan_image_folder
    sets = []
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        classes, files = scan_image_folder(Path(root) / split)
        chosen = [f for label in range(len(classes))
                  for f in [f for f in files if f[1] == label][:per_class]]
        images = decode_images([f[0] for f in chosen])
        sets.append(ArrayDataset(images, np.array([f[1] for f in chosen]), classes))
    return sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="feature_maps_out", help="output folder")
    parser.add_argument("--cifar-root",
                        help="CIFAR-10 as JPEGs in <root>/{train,test}/<class>/ (default: "
                        "$CNNFRAME_DATA)")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("CNNFRAME_EXAMPLES_QUICK") == "1",
                        help="train only a few seconds (for tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Shapes: 3 epochs on 3,000 images reach about 90% test accuracy.
    n_train, n_test, epochs = (256, 64, 1) if args.quick else (3000, 800, 3)
    print(f"Shapes: training on {n_train} images for {epochs} epoch(s)")
    train_set = Shapes(n=n_train, size=32, seed=0)
    test_set = Shapes(n=n_test, size=32, seed=0, train=False)
    model = build_model(len(train_set.classes), 32)
    initial = model.nodes["conv1"].params["weight"].copy()
    start = time.perf_counter()
    accuracy = train(model, train_set, test_set, epochs)
    print(f"  test accuracy {accuracy:.1%} after {time.perf_counter() - start:.0f} s")
    pictures(model, initial, test_set.images[0], test_set.classes, "shapes", out)

    # 2. CIFAR-10, when the JPEG copy is there: about a minute on a class-balanced subset.
    root, why_not = find_cifar_copy(args.cifar_root)
    if root is None:
        print(f"CIFAR-10: skipped, {why_not}")
        return 0
    per_train, per_test, epochs = (20, 5, 1) if args.quick else (500, 100, 2)
    cifar_train, cifar_test = load_cifar_subset(root, per_train, per_test)
    print(f"CIFAR-10: training on {len(cifar_train.labels)} images for {epochs} epoch(s)")
    model = build_model(len(cifar_train.classes), cifar_train.images.shape[-1])
    initial = model.nodes["conv1"].params["weight"].copy()
    start = time.perf_counter()
    accuracy = train(model, cifar_train, cifar_test, epochs)
    print(f"  test accuracy {accuracy:.1%} after {time.perf_counter() - start:.0f} s "
          f"(chance: {1 / len(cifar_train.classes):.0%})")
    pictures(model, initial, cifar_test.images[0], cifar_test.classes, "cifar10", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
