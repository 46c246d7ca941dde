"""Training history: one row per epoch (written as CSV) and points of the per-step curve."""
import csv
import io
import math

from cnnframe.train.checkpoint import atomic_write


class History:
    """One row (a dict of numbers) per finished epoch, plus the points of the per-step curve.

    ``history["val_accuracy"]`` is a column as a list; ``history.rows`` are the
    rows; ``history.to_csv(path)`` writes them (atomically).

    ``history.steps`` holds the training loss and metrics over short runs of steps
    (about 50 points per epoch), each a dict with "step" (the last step of the run of
    steps), "epoch" (fractional: 0.5 is the middle of the first epoch), "loss" and the
    metrics.  `cnnframe.train.plots.plot_curves` draws them, so even a one-epoch run has
    a curve.  They are kept in checkpoints but not written to metrics.csv.
    """

    def __init__(self, rows=(), steps=()):
        self.rows = [dict(r) for r in rows]
        self.steps = [dict(p) for p in steps]

    def append(self, row):
        self.rows.append(dict(row))

    def append_step(self, point):
        """Add a point of the per-step curve (see the class docstring)."""
        self.steps.append(dict(point))

    @property
    def columns(self):
        cols = []
        for row in self.rows:
            for k in row:
                if k not in cols:
                    cols.append(k)
        return cols

    def __getitem__(self, column):
        if column not in self.columns:
            raise KeyError(f"history has no column {column!r}; columns: {self.columns}")
        return [row.get(column, math.nan) for row in self.rows]

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self):
        return (f"History({len(self.rows)} epochs, {len(self.steps)} step points, "
                f"columns={self.columns})")

    def to_csv(self, path=None):
        """Write the rows as CSV to `path` (atomically) and return the text."""
        buf = io.StringIO()
        cols = self.columns
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(row.get(k, "")) for k in cols})
        text = buf.getvalue()
        if path is not None:
            atomic_write(path, lambda f: f.write(text), mode="w")
        return text

    @classmethod
    def from_csv(cls, path):
        """Read a file written by `to_csv` (numbers come back as int or float)."""
        with open(path, newline="", encoding="utf-8") as f:
            return cls([{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)])


def _fmt(v):
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return v


def _parse(v):
    if v == "":
        return math.nan
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v
