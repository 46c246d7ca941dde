"""`cnnframe datasets`: list the datasets found, with image counts per split and class."""
import json
import os
import textwrap

from cnnframe.data.base import default_data_root


def add_parser(subparsers):
    p = subparsers.add_parser(
        "datasets", help="list the datasets found and their sizes",
        description="List CIFAR-10 (python/binary, directory or archive), image folders "
                    "(root/train/<class>/...), MNIST/Fashion-MNIST IDX files and the built-in "
                    "Shapes set, with counts per split and class. Searches each root and its "
                    "immediate subdirectories, plus /usr/share/datasets/fashion-mnist.")
    p.add_argument("--root", action="append", default=None, metavar="DIR",
                   help="a directory to search (repeatable); default: $CNNFRAME_DATA (a "
                        "path list) or ~/.cache/cnnframe/datasets, and the current directory")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.set_defaults(func=run)


def default_roots():
    env = os.environ.get("CNNFRAME_DATA")
    roots = env.split(os.pathsep) if env else [str(default_data_root())]
    return roots + ["."]


def format_entry(entry, width=100):
    lines = [f"{entry['dataset']}  [{entry['format']}]  {entry['location']}"]
    for split, info in entry["splits"].items():
        per_class = ", ".join(f"{c} {n}" for c, n in info["classes"].items())
        head = f"  {split:<5} {info['n']:>7,}  "
        lines += textwrap.wrap(per_class or "(none)", width, initial_indent=head,
                               subsequent_indent=" " * len(head))
    if "error" in entry:
        lines.append(f"  error: {entry['error']}")
    return "\n".join(lines)


def run(args):
    from cnnframe.data.discover import scan

    roots = args.root or default_roots()
    missing = [r for r in (args.root or []) if not os.path.isdir(r)]
    if missing:
        raise FileNotFoundError(f"--root {', '.join(missing)}: no such directory")
    found = scan(roots)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(f"searched: {', '.join(roots)}\n")
        print("\n\n".join(format_entry(e) for e in found))
    return 1 if any("error" in e for e in found) else 0
