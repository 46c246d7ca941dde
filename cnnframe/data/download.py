"""Fetch a file over HTTP(S) with a progress bar, atomically, and verify its MD5."""
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from cnnframe._files import create_temp_file


# Limits of one download from one URL, so a hostile or broken server cannot fill the disk or hold
# a download forever by sending a byte now and then (the timeout applies to each read only).
MAX_BYTES = 1 << 30  # 1 GiB
DEADLINE = 3600.0  # seconds from connecting to the last byte


class DownloadError(OSError):
    """A download failed: every URL unreachable or erroring, truncated, or with a bad checksum."""


class ChecksumError(DownloadError):
    """A downloaded (or present) file does not have the expected MD5."""


def md5sum(path, chunk=1 << 20):
    """The MD5 hex digest of the file at `path`."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def mirror_urls(filename, official, mirrors=None, env_var=None):
    """The URLs to try for `filename`, in order: `mirrors` (or $env_var), then `official`.

    Each mirror is a base URL (the file name is appended) or a full URL ending in `filename`.
    $env_var holds mirrors separated by commas or whitespace.
    """
    if mirrors is None and env_var and os.environ.get(env_var):
        mirrors = os.environ[env_var].replace(",", " ").split()
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    urls = []
    for base in list(mirrors or []) + [official]:
        url = base if base.endswith("/" + filename) else base.rstrip("/") + "/" + filename
        if url not in urls:
            urls.append(url)
    return urls


def _fetch(url, dest, timeout, progress, desc, max_bytes, deadline):
    """Stream `url` into `dest` (a file object); return the number of bytes written.

    Stops with DownloadError once more than `max_bytes` arrive or `deadline` seconds have passed.
    """
    from tqdm.auto import tqdm

    give_up_at = time.monotonic() + deadline
    req = urllib.request.Request(url, headers={"User-Agent": "cnnframe"})
    with urllib.request.urlopen(req, timeout=min(timeout, deadline)) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        if total is not None and max_bytes is not None and total > max_bytes:
            raise DownloadError(f"the server announces {total:,} bytes, more than the limit of "
                                f"{max_bytes:,} (max_bytes); nothing was downloaded")
        # read1 returns what one socket read brings instead of waiting for a full block, so the
        # deadline is checked between reads that each take at most `timeout` seconds
        read = getattr(resp, "read1", resp.read)
        written = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=desc, disable=not progress, leave=False) as bar:
            while True:
                if time.monotonic() > give_up_at:
                    raise DownloadError(
                        f"not finished within the deadline of {deadline:g} s ({written:,} bytes "
                        "received); the server is too slow, try a mirror or a larger deadline")
                block = read(1 << 20)
                if not block:
                    break
                written += len(block)
                if max_bytes is not None and written > max_bytes:
                    raise DownloadError(f"the server sent more than the limit of {max_bytes:,} "
                                        "bytes (max_bytes); stopped reading")
                dest.write(block)
                bar.update(len(block))
    if total is not None and written != total:
        raise DownloadError(f"truncated transfer: got {written} of {total} bytes")
    return written


def download(urls, path, md5=None, timeout=60.0, progress=True, hint=None, max_bytes=MAX_BYTES,
             deadline=DEADLINE):
    """Download the first URL of `urls` that works to `path`, atomically, checking its MD5.

    The data goes to a temporary file next to `path` that replaces `path` only once complete and
    verified, so an interrupted or failed download never leaves a partial file behind.

    Parameters
    ----------
    urls : str or list of str
        URLs tried in order until one succeeds (mirrors first, the official one last).
    path : str or Path
        The destination file.
    md5 : str, optional
        The expected MD5 hex digest; a mismatch deletes the download and raises ChecksumError.
    timeout : float
        Seconds to wait for the server on each connection attempt and each read.
    progress : bool
        Show a tqdm progress bar.
    hint : str, optional
        Appended to the error message when every URL fails (e.g. how to fetch the file by hand).
    max_bytes : int or None
        The most bytes accepted from one URL: a larger Content-Length is refused before reading,
        and a transfer is stopped as soon as it exceeds this. None: no limit.
    deadline : float
        Seconds one URL may take in all, from connecting to the last byte; the transfer stops
        at the first read that ends after it (so at most `timeout` seconds late).

    Returns
    -------
    Path
        `path`.

    Raises
    ------
    ChecksumError
        The downloaded file's MD5 is not `md5` (the file is deleted).
    DownloadError
        Every URL failed (unreachable, an HTTP error, truncated, too large or past the deadline);
        the message lists each URL with its error.
    """
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0 or None, got {max_bytes}")
    if not deadline > 0:
        raise ValueError(f"deadline must be > 0 seconds, got {deadline}")
    path = Path(path)
    urls = [urls] if isinstance(urls, str) else list(urls)
    path.parent.mkdir(parents=True, exist_ok=True)
    failures, checksum_failures = [], 0
    for url in urls:
        fd, tmp = create_temp_file(path, suffix=".part")  # mode per umask, unlike mkstemp
        try:
            with os.fdopen(fd, "wb") as f:
                _fetch(url, f, timeout, progress, path.name, max_bytes, deadline)
                f.flush()
                os.fsync(f.fileno())
            if md5 is not None:
                got = md5sum(tmp)
                if got != md5.lower():
                    raise ChecksumError(
                        f"checksum mismatch for {url}: MD5 {got}, expected {md5}; the download "
                        "was deleted")
            os.replace(tmp, path)
            return path
        except ChecksumError as exc:
            failures.append(str(exc))
            checksum_failures += 1
        except (OSError, ValueError, http.client.HTTPException) as exc:
            plain_url_error = type(exc) is urllib.error.URLError  # reason says more than str()
            failures.append(f"{url}: {exc.reason if plain_url_error else exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    cls = ChecksumError if checksum_failures == len(urls) else DownloadError
    message = f"could not download {path.name}:\n  " + "\n  ".join(failures)
    raise cls(message + (f"\n{hint}" if hint else ""))
