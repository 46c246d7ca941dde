"""`cnnframe gradcheck`: check a layer's backward against finite differences.

    cnnframe gradcheck conv2d --input-shape 2,3,8,8 \\
        --config '{"in_channels": 3, "out_channels": 4, "kernel_size": 3}'
    cnnframe gradcheck my_package.layers:MyLayer --input-shape 2,3,8,8
    cnnframe gradcheck my_layer:MyLayer --input-shape 2,3,8,8      # ./my_layer.py
    cnnframe gradcheck add --input-shape 2,3,4,4 --input-shape 2,3,4,4
    cnnframe gradcheck relu --input-shape 2,3,8,8 --seeds 1000     # sweep seeds

Prints the report (per input/parameter errors, worst elements, likely causes,
structural checks) and exits 0 when it passed, 1 when it failed.
"""
import contextlib
import importlib
import inspect
import json
import os
import sys


def add_parser(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="check a layer's gradients against finite differences",
        description="Check a layer's backward against central differences of its forward "
                    "(on a float64 copy), with structural checks and likely causes of failures. "
                    "Exit status 0 = passed, 1 = failed.")
    p.add_argument("layer", help="PACKAGE.MODULE:ClassName (modules in the current directory "
                                 "are found, as by `python -m`), or a registered layer name "
                                 "(see `cnnframe layers`)")
    p.add_argument("--input-shape", action="append", required=True, metavar="N,C,H,W",
                   help="input shape with the batch dimension, e.g. 2,3,8,8 "
                        "(repeat for multi-input layers)")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="layer config as JSON, e.g. '{\"in_channels\": 3, ...}'")
    p.add_argument("--eval", action="store_true", help="check eval mode (training=False)")
    p.add_argument("--seed", type=int, default=0, help="seed of inputs and projections (0)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="check K seeds (seed, seed+1, ...) and summarise (default 1)")
    p.add_argument("--eps", type=float, default=1e-6, help="finite-difference step (1e-6)")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance (1e-6)")
    p.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (1e-5)")
    p.add_argument("--mode", choices=("auto", "projections", "full"), default="auto",
                   help="random output projections or the exact Jacobian (auto: exact for "
                        "outputs of <= 64 elements)")
    p.add_argument("--projections", type=int, default=3, help="random projections (3)")
    p.add_argument("--max-elements", type=int, default=2048,
                   help="elements checked per input/parameter, chosen at random (2048)")
    p.set_defaults(func=run)
    return p


def _parse_shape(text):
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--input-shape must be comma-separated ints like 2,3,8,8, "
                         f"got {text!r}") from None
    if len(shape) < 2 or any(v < 1 for v in shape):
        raise ValueError(f"--input-shape needs the batch dimension and sizes >= 1, got {text!r}")
    return shape


@contextlib.contextmanager
def _current_directory_importable():
    """Put the current directory first on sys.path, as `python -m` does, while it runs."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _resolve(spec):
    """A Layer class from 'pkg.module:Class' (found in the current directory too, as
    `python -m` finds modules) or a registered name."""
    if ":" in spec:
        module, _, name = spec.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import module {module!r} from the current directory or "
                             f"the installed packages ({exc})") from None
        cls = getattr(mod, name, None)
        if not inspect.isclass(cls):
            raise ValueError(f"module {module!r} has no class {name!r}")
        return cls
    from cnnframe.registry import get_layer
    return get_layer(spec)


def run(args):
    with _current_directory_importable():
        return _run(args)


def _run(args):
    from cnnframe.gradcheck import check_layer
    cls = _resolve(args.layer)
    config = {}
    if args.config:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config is not valid JSON: {exc}") from None
        if not isinstance(config, dict):
            raise ValueError(f"--config must be a JSON object, got {args.config!r}")
    shapes = [_parse_shape(s) for s in args.input_shape]
    multi = len(shapes) > 1 or getattr(cls, "num_inputs", 1) is None
    kwargs = dict(input_shape=shapes if multi else shapes[0], config=config, eps=args.eps,
                  atol=args.atol, rtol=args.rtol, training=not args.eval,
                  n_projections=args.projections, mode=args.mode,
                  max_elements=args.max_elements)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.seeds == 1:
        report = check_layer(cls, seed=args.seed, **kwargs)
        print(report)
        return 0 if report.passed else 1
    failed, skipped, moved, worst = [], 0, 0, 0.0
    for seed in range(args.seed, args.seed + args.seeds):
        report = check_layer(cls, seed=seed, **kwargs)
        skipped += sum(t.skipped for t in report.targets)
        moved += sum(int(n.split()[1]) for n in report.notes if n.startswith("moved "))
        worst = max([worst] + [t.max_rel_err for t in report.targets if t.error is None])
        if not report.passed:
            failed.append(seed)
            if len(failed) == 1:
                print(report)
    print(f"{cls.__name__}: {args.seeds - len(failed)} of {args.seeds} seeds passed "
          f"(seeds {args.seed}..{args.seed + args.seeds - 1}); elements moved off kinks: "
          f"{moved}, skipped: {skipped}; max relative error: "
          f"{worst:.2e}" + (f"; failed seeds: {failed[:20]}" if failed else ""))
    sys.stdout.flush()
    return 0 if not failed else 1
