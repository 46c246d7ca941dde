"""Per-epoch training history, written as CSV."""
import csv
import io
import math

from cnnframe.train.checkpoint import atomic_write


class History:
    """One row (a dict of numbers) per finished epoch.

    ``history["val_accuracy"]`` is a column as a list; ``history.rows`` are the
    rows; ``history.to_csv(path)`` writes them (atomically).
    """

    def __init__(self, rows=()):
        self.rows = [dict(r) for r in rows]

    def append(self, row):
        self.rows.append(dict(row))

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
        return f"History({len(self.rows)} epochs, columns={self.columns})"

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
