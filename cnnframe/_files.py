"""Atomic file writes, shared by everything cnnframe saves.

A file is written to a temporary name in the same folder, flushed to disk and
renamed over its final name, so a crash or an interrupt never leaves a partial
file behind: readers see the old file or the new one.
"""
import os
import tempfile


def atomic_write(path, write, mode="wb"):
    """Write a file atomically: ``write(f)`` fills a temporary file that then replaces `path`.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name.
    write : callable
        Called with the open temporary file.
    mode : str
        "wb" or "w" (text, UTF-8).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8",
                                                            "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - not every filesystem allows fsync on a folder
        pass
