"""Atomic file writes, shared by everything cnnframe saves, and the cleanup of their leftovers.

A file is written to a temporary name in the same folder, flushed to disk and
renamed over its final name, so a crash or an interrupt never leaves a partial
file behind: readers see the old file or the new one.

Temporary files are created like an ordinary ``open(path, "w")`` would create the
final file: with mode 0666 minus the process umask (``tempfile.mkstemp`` would make
them 0600, and the rename would keep that).

Their names record who writes them::

    .<final name>.<host>.<pid>.<random>.tmp      e.g. .model.cnnf.3f2a9b1c.4711.0c1d2e3f.tmp

(``<host>`` is 8 hex digits of a hash of the host name.)  A process killed in the
middle of a write leaves its temporary file behind; :func:`remove_stale_temp_files`
removes such leftovers when a run starts.  A temporary file is *stale* when its writer
can no longer finish it:

- written on this host by a process that no longer exists, or whose process id now
  belongs to a process started after the file was last modified (the id was reused);
- or, when the writer cannot be checked (written on another host of a shared
  filesystem, or an older cnnframe's ``.<final name>.<8 random characters>.tmp``),
  not modified for ``STALE_AFTER_S`` (one hour): a live writer modifies its file
  continuously.

A file of a live writer on this host is never removed, however old.
"""
import hashlib
import os
import re
import secrets
import socket
import time

STALE_AFTER_S = 3600.0
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-f]{8}"
                        r"\.tmp$")
_OLD_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's


def create_temp_file(path, suffix=".tmp"):
    """Create a new, empty temporary file next to `path`, with the mode ``open()`` would give.

    Parameters
    ----------
    path : str or os.PathLike
        The final file the temporary file will replace; its folder must exist.
    suffix : str
        The end of the temporary name (``.tmp`` for :func:`atomic_write`).

    Returns
    -------
    (int, str)
        An open file descriptor (write-only) and the temporary file's path.
    """
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}"
                                   f"{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp  # 0666 & ~umask, as open() does
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file for {path} in {folder}")


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
    fd, tmp = create_temp_file(path)
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


def _boot_time():
    """Seconds since the epoch at which this (Linux) machine booted, or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _process_start_time(pid):
    """When process `pid` started (seconds since the epoch), or None where /proc is absent."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime, in clock ticks since boot); the command name (field 2) may
    # hold spaces and parentheses, so count from the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if boot is None or len(fields) < 20:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _writer_alive(pid, modified):
    """Whether process `pid` (on this host) may still be writing a file last modified at
    `modified` (seconds since the epoch)."""
    if pid == os.getpid():
        return True
    if pid <= 0:  # not a process id a writer could have
        return False
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    except OverflowError:  # not a valid pid at all
        return False
    started = _process_start_time(pid)
    # 2 s of slack: the start time is known to the clock tick, the boot time to the second.
    return started is None or started <= modified + 2.0


def is_stale_temp_file(path, now=None):
    """Whether `path` is a leftover temporary file of :func:`atomic_write` (see the module doc).

    Parameters
    ----------
    path : str or os.PathLike
    now : float, optional
        The current time (seconds since the epoch).

    Returns
    -------
    bool
        False for names that are not cnnframe temporary files, and for files that vanished.
    """
    name = os.path.basename(os.fspath(path))
    new, old = _TEMP_NAME.match(name), _OLD_TEMP_NAME.match(name)
    if not new and not old:
        return False
    try:
        modified = os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    if new and new.group("host") == _HOST:
        return not _writer_alive(int(new.group("pid")), modified)
    now = time.time() if now is None else now
    return now - modified > STALE_AFTER_S


def remove_stale_temp_files(folder, final_names=None):
    """Delete the stale temporary files in `folder` that :func:`atomic_write` left behind.

    Parameters
    ----------
    folder : str or os.PathLike
        A missing folder has nothing to remove.
    final_names : re.Pattern, optional
        Only temporary files whose final name matches this pattern are considered (a
        checkpoint folder passes its checkpoint names).

    Returns
    -------
    list of str
        The paths removed.
    """
    folder = os.fspath(folder)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    now = time.time()
    for name in names:
        m = _TEMP_NAME.match(name) or _OLD_TEMP_NAME.match(name)
        if not m or (final_names is not None and not final_names.match(m.group("final"))):
            continue
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path) and is_stale_temp_file(path, now):
            try:
                os.unlink(path)
            except FileNotFoundError:  # another process cleaned it up first
                continue
            removed.append(path)
    return removed
