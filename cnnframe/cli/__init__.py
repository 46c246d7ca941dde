"""The `cnnframe` command line: one module per subcommand.

Each module listed in COMMANDS defines `add_parser(subparsers)`, which adds
its subparser and sets `func=run` on it, and `run(args) -> int`.
"""
import importlib
import os
import sys

from cnnframe.cli._args import Parser, positive_int

COMMANDS = [
    "layers", "summary", "train", "evaluate", "predict",
    # module name (in cnnframe.cli) for each subcommand; add yours here
    "datasets",
    "gradcheck",
    "import_onnx",
    "export",
]


def build_parser():
    parser = Parser(prog="cnnframe", description="cnnframe: convolutional networks on the CPU")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads for the kernels and BLAS (default: all cores)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cnnframe.cli.{name}").add_parser(sub)
    return parser


# The exit status of a command whose output pipe was closed early (`cnnframe ... | head`):
# 128 + SIGPIPE, what the shell reports for programs that SIGPIPE ends.
BROKEN_PIPE_STATUS = 141


def main(argv=None):
    """Run the `cnnframe` command line `argv` (default: sys.argv[1:]); return the exit status.

    A bad flag exits with status 2 (one `error:` line); an error of the command returns 1
    (one `error:` line); a reader that closes the output early (``| head``) returns
    `BROKEN_PIPE_STATUS` without a message.
    """
    try:
        status = _run(argv)
        sys.stdout.flush()  # output still buffered meets a closed pipe here
    except BrokenPipeError:
        # Python ignores SIGPIPE, so the write raised instead of ending the process. Stop
        # quietly as other commands do, and point stdout at devnull: Python flushes it
        # again at exit, which would report the broken pipe once more (see "Note on
        # SIGPIPE" in the documentation of Python's signal module).
        _stdout_to_devnull()
        return BROKEN_PIPE_STATUS
    return status


def _stdout_to_devnull():
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (e.g. captured in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _run(argv):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["evaluate"]:
        from cnnframe.cli.evaluate import bare_tta_as_flip
        argv = bare_tta_as_flip(argv)
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
    except BrokenPipeError:  # not an error of the command: see main
        raise
    except (ValueError, TypeError, OSError, KeyError, MemoryError, ImportError) as exc:
        print(f"cnnframe {args.command}: error: {exc}", file=sys.stderr)
        return 1
