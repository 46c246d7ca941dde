"""Draw test accuracy against training time from run_accuracy.py's results.json files.

    python benchmarks/accuracy/plot_accuracy.py runs/accuracy              # -> docs/accuracy_vs_time.png
    python benchmarks/accuracy/plot_accuracy.py runs/a runs/b/results.json --out fig.png
    python benchmarks/accuracy/plot_accuracy.py runs/accuracy --dataset fashion-mnist

Each argument is a results.json file or a folder searched for them (at any depth).  One
marker per run (each seed of a config), a larger one at each config's mean, labelled with
it.  By default only the CIFAR-10 runs are drawn.  Each run is placed at the accuracy its
target is judged on and at the time counted for it (run_accuracy.py: the cifar10_fast
configs at their multi-crop TTA accuracy, with the whitening init and the TTA evaluation
counted in the time; the others at their plain accuracy and training time); the figure's
labels say so.  Drawn with cnnframe.viz (needs matplotlib), written atomically.
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Keys every results.json must carry for the plot (run_accuracy.py writes more).
REQUIRED = ("name", "dataset", "config", "seed", "accuracy", "tta_accuracy", "judged_on",
            "counted_minutes", "isa", "threads")


def find_results(paths):
    """The results.json files named or found under the folders in `paths`, sorted, each once.

    Raises FileNotFoundError naming a path that does not exist, or a folder without any.
    """
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(p.rglob("results.json"))
            if not inside:
                raise FileNotFoundError(f"no results.json under {p} (run run_accuracy.py "
                                        "with --out pointing there first)")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such results file or folder")
    return sorted(set(found))


def read_results(path):
    """One run's results (a dict) read from `path`, checked for the keys the plot needs."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object of run_accuracy.py's results, got "
                         f"{type(results).__name__}")
    missing = [k for k in REQUIRED if k not in results]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)} (run_accuracy.py's "
                         f"results.json has {', '.join(REQUIRED)})")
    if results["judged_on"] not in ("plain", "tta"):
        raise ValueError(f"{path}: judged_on must be 'plain' or 'tta', got "
                         f"{results['judged_on']!r}")
    if results["judged_on"] == "tta" and results["tta_accuracy"] is None:
        raise ValueError(f"{path}: judged_on is 'tta' but tta_accuracy is null")
    return results


def plot_points(runs):
    """(label, minutes, accuracy) per run for cnnframe.viz.accuracy_time_figure: the label
    names the config and, for a config judged with TTA, the TTA mode."""
    points = []
    for r in runs:
        label = r["config"]
        accuracy = r["accuracy"]
        if r["judged_on"] == "tta":
            label += f" ({r.get('tta') or 'TTA'} TTA, time counted)"
            accuracy = r["tta_accuracy"]
        points.append((label, r["counted_minutes"], accuracy))
    return points


def subtitle(runs):
    """What the runs ran on, e.g. "avx2, 2 threads" (each distinct setting, joined)."""
    settings = sorted({f"{r['isa']}, {r['threads']} threads" for r in runs})
    return "; ".join(settings)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", help="results.json files or folders holding them")
    ap.add_argument("--out", default=str(REPO / "docs" / "accuracy_vs_time.png"),
                    help="the PNG to write (default: docs/accuracy_vs_time.png)")
    ap.add_argument("--dataset", default="cifar10",
                    help="draw the runs on this dataset (default: cifar10)")
    ap.add_argument("--title", help="the figure's title (default: names the dataset, the "
                    "instruction set and the threads)")
    args = ap.parse_args(argv)
    from cnnframe import viz
    try:
        runs = [read_results(p) for p in find_results(args.results)]
    except (FileNotFoundError, ValueError) as exc:
        print(f"plot_accuracy: {exc}", file=sys.stderr)
        return 2
    runs = [r for r in runs if r["dataset"] == args.dataset]
    if not runs:
        print(f"plot_accuracy: no results for dataset {args.dataset!r} in "
              f"{', '.join(args.results)}", file=sys.stderr)
        return 2
    title = args.title or f"{args.dataset}: test accuracy against training time ({subtitle(runs)})"
    path = viz.save_accuracy_time(plot_points(runs), args.out, title=title,
                                  xlabel="training time (minutes)",
                                  ylabel="test accuracy (%)")
    print(f"{len(runs)} runs of {len({r['config'] for r in runs})} configs drawn: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
