"""The `cnnframe` command line: one module per subcommand.

Each module listed in COMMANDS defines `add_parser(subparsers)`, which adds
its subparser and sets `func=run` on it, and `run(args) -> int`.
"""
import importlib
import sys

from cnnframe.cli._args import Parser, positive_int

COMMANDS = [
    "layers", "summary", "train", "evaluate", "predict",
    # module name (in cnnframe.cli) for each subcommand; add yours here
    "datasets",
    "gradcheck",
]


def build_parser():
    parser = Parser(prog="cnnframe", description="cnnframe: convolutional networks on the CPU")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads for the kernels and BLAS (default: all cores)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cnnframe.cli.{name}").add_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from cnnframe._alloc import keep_freed_memory
    keep_freed_memory()  # large arrays reuse freed memory instead of faulting in fresh pages
    if args.threads is not None:
        import cnnframe
        cnnframe.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, KeyError, MemoryError, ImportError) as exc:
        print(f"cnnframe {args.command}: error: {exc}", file=sys.stderr)
        return 1
