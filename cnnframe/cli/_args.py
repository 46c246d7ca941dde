"""Argument types and the parser class shared by every `cnnframe` subcommand.

A bad flag value is rejected while the command line is parsed, with one line on stderr
that names the flag, the value and what was expected (exit status 2, as argparse does)::

    cnnframe train: error: argument --threads: expected an integer >= 1, got '0'
"""
import argparse


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit with status 2.

    Subparsers made by ``add_subparsers`` inherit the class, so every subcommand behaves
    the same.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(text, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text):
    """An argparse type: an integer >= 1 (threads, epochs, batch size, steps...)."""
    return _integer(text, 1)


def nonnegative_int(text):
    """An argparse type: an integer >= 0 (seeds)."""
    return _integer(text, 0)


def _real(text, positive):
    try:
        value = float(text)
    except ValueError:
        value = None
    ok = value is not None and value == value and value != float("inf") \
        and (value > 0 if positive else value >= 0)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"expected a finite number {'> 0' if positive else '>= 0'}, got {text!r}")
    return value


def positive_float(text):
    """An argparse type: a finite number > 0 (step sizes)."""
    return _real(text, True)


def nonnegative_float(text):
    """An argparse type: a finite number >= 0 (tolerances)."""
    return _real(text, False)


def shape(text):
    """An argparse type: a shape written as comma-separated integers >= 1, e.g. ``2,3,8,8``.

    Returns
    -------
    tuple of int
        At least two entries (the batch dimension and one more).
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = None
    if dims is None or len(dims) < 2 or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers >= 1 with the batch dimension first, "
            f"like 2,3,8,8; got {text!r}")
    return dims
