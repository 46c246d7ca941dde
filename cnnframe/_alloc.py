"""Keep freed memory in the process for reuse (glibc mallopt).

By default glibc serves large blocks with fresh mmaps and hands freed ones
back to the OS, so every new large array pays page faults again (about 1 ms
per MiB on these machines).  Raising glibc's mmap and trim thresholds keeps
freed blocks in the heap for the next allocation.  This is a process-wide
setting, so the library never applies it on import: the `cnnframe` command
does (its process is ours), and the benchmarks do for both sides they compare.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory():
    """Return True if glibc accepted the settings (False on other C libraries)."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):
        return False
