"""Downloads against a local HTTP server on 127.0.0.1 serving a tiny CIFAR archive."""
import hashlib
import http.server
import socket
import threading
import time

import numpy as np
import pytest

from cnnframe.data import CIFAR10, ChecksumError, DownloadError, cifar
from cnnframe.data.download import download, mirror_urls


class Handler(http.server.BaseHTTPRequestHandler):
    routes = {}  # path -> (status, body, declared length or None), or a function of the handler

    def do_GET(self):
        route = self.routes.get(self.path, (404, b"not found", None))
        if callable(route):
            route(self)
            return
        status, body, length = route
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        if length is not None:  # a truncated transfer: close before sending all we promised
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.routes = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def archive(writers, cifar_arrays, monkeypatch, server):
    # the "official" URL is tried last: point it at the local server so no test goes online
    monkeypatch.setattr(cifar, "OFFICIAL_URL", server[1] + "/official/")
    data = writers.cifar_archive_bytes("binary", cifar_arrays)
    monkeypatch.setitem(cifar.MD5, cifar.ARCHIVES["binary"], hashlib.md5(data).hexdigest())
    monkeypatch.delenv(cifar.MIRRORS_ENV, raising=False)
    return data


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_good_checksum(tmp_path, server, archive, writers, cifar_arrays):
    _, base = server
    Handler.routes["/cifar/cifar-10-binary.tar.gz"] = (200, archive, None)
    ds = CIFAR10(tmp_path / "data", train=False, download=True, mirrors=[base + "/cifar"],
                 progress=False)
    images, labels = writers.expected_split(cifar_arrays, False)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert leftovers(tmp_path / "data") == ["cifar-10-binary.tar.gz"]
    assert (tmp_path / "data" / "cifar-10-binary.tar.gz").read_bytes() == archive
    # present now: a second construction does not download (the server is emptied)
    Handler.routes.clear()
    assert len(CIFAR10(tmp_path / "data", train=True, download=True, progress=False)) == 20


def test_wrong_checksum_deletes_file(tmp_path, server, archive, monkeypatch):
    _, base = server
    Handler.routes["/cifar-10-binary.tar.gz"] = (200, archive, None)
    monkeypatch.setitem(cifar.MD5, cifar.ARCHIVES["binary"], "0" * 32)
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected 0{32}.*deleted"):
        CIFAR10(tmp_path, download=True, mirrors=[base], progress=False)
    assert leftovers(tmp_path) == []
    with pytest.raises(ChecksumError, match=r"MD5 [0-9a-f]{32}, expected 0{32}"):
        download(base + "/cifar-10-binary.tar.gz", tmp_path / "a.tar.gz", "0" * 32,
                 progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [404, 500])
def test_server_error_names_url_and_manual_alternative(tmp_path, server, archive, status):
    _, base = server
    Handler.routes["/cifar-10-binary.tar.gz"] = (status, b"oops", None)
    with pytest.raises(DownloadError) as info:
        CIFAR10(tmp_path, download=True, mirrors=[base], progress=False)
    message = str(info.value)
    assert f"{base}/cifar-10-binary.tar.gz: HTTP Error {status}" in message
    official = f"{base}/official/cifar-10-binary.tar.gz"
    assert f"{official}: HTTP Error 404" in message  # tried last and named in the hint
    assert f"download {official}" in message
    assert "by hand" in message and str(tmp_path) in message
    assert leftovers(tmp_path) == []


def test_truncated_transfer(tmp_path, server, archive):
    _, base = server
    Handler.routes["/cifar-10-binary.tar.gz"] = (200, archive[:100], len(archive))
    with pytest.raises(DownloadError, match=rf"{base}/cifar-10-binary.tar.gz: .*"
                                            r"(truncated|IncompleteRead)"):
        download([base + "/cifar-10-binary.tar.gz"], tmp_path / "x.tar.gz", progress=False)
    assert leftovers(tmp_path) == []


def test_falls_back_to_next_mirror(tmp_path, server, archive):
    _, base = server
    Handler.routes["/good/cifar-10-binary.tar.gz"] = (200, archive, None)
    Handler.routes["/bad/cifar-10-binary.tar.gz"] = (200, b"garbage", None)
    ds = CIFAR10(tmp_path, train=False, download=True, progress=False,
                 mirrors=[base + "/missing", base + "/bad", base + "/good/"])
    assert len(ds) == 4


def test_mirrors_from_environment(tmp_path, server, archive, monkeypatch):
    _, base = server
    Handler.routes["/env/cifar-10-binary.tar.gz"] = (200, archive, None)
    monkeypatch.setenv(cifar.MIRRORS_ENV, f"{base}/nothing-here, {base}/env")
    assert len(CIFAR10(tmp_path, train=False, download=True, progress=False)) == 4


def test_unreachable_url(tmp_path, archive):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}/cifar-10-binary.tar.gz"
    with pytest.raises(DownloadError, match=rf"{url}: .*refused"):
        download([url], tmp_path / "x", progress=False, timeout=5)
    assert leftovers(tmp_path) == []


def test_python_archive_download(tmp_path, server, writers, cifar_arrays, monkeypatch):
    _, base = server
    data = writers.cifar_archive_bytes("python", cifar_arrays)
    monkeypatch.setitem(cifar.MD5, cifar.ARCHIVES["python"], hashlib.md5(data).hexdigest())
    Handler.routes["/cifar-10-python.tar.gz"] = (200, data, None)
    ds = CIFAR10(tmp_path, download=True, download_format="python", mirrors=base, progress=False)
    assert ds.format == "python" and len(ds) == 20


def test_mirror_urls_order_and_forms():
    urls = mirror_urls("f.tar.gz", "https://official/", ["http://a", "http://b/x/f.tar.gz"])
    assert urls == ["http://a/f.tar.gz", "http://b/x/f.tar.gz", "https://official/f.tar.gz"]


def test_official_checksums_are_the_published_ones():
    assert cifar.MD5 == {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
                         "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}


def stream(block, count, pause=0.0, sent=None):
    """A route sending `count` blocks with no Content-Length (HTTP/1.0: the body ends when the
    connection closes), `pause` seconds apart; counts what it sent in sent["bytes"]."""
    sent = {} if sent is None else sent
    sent["bytes"] = 0

    def route(handler):
        handler.send_response(200)
        handler.end_headers()
        try:
            for _ in range(count):
                handler.wfile.write(block)
                handler.wfile.flush()
                sent["bytes"] += len(block)
                time.sleep(pause)
        except OSError:  # the client hung up
            pass
    return route


def test_slow_server_is_dropped_at_the_deadline(tmp_path, server):
    # one byte every 0.05 s for up to 20 s: each read is quick, the transfer is not
    _, base = server
    Handler.routes["/drip"] = stream(b"x", 400, pause=0.05)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/drip: not finished within the deadline of 0\.5 s "
                                            r"\([1-9][0-9]* bytes received\)"):
        download(base + "/drip", tmp_path / "x", progress=False, timeout=5, deadline=0.5)
    assert time.monotonic() - start < 3
    assert leftovers(tmp_path) == []


def test_announced_size_above_the_limit_is_refused_before_reading(tmp_path, server):
    _, base = server
    Handler.routes["/big"] = (200, b"x" * 100, 10**9)
    with pytest.raises(DownloadError, match=r"/big: the server announces 1,000,000,000 bytes, "
                                            r"more than the limit of 100,000 \(max_bytes\)"):
        download(base + "/big", tmp_path / "x", progress=False, max_bytes=100_000)
    assert leftovers(tmp_path) == []


def test_stream_without_length_is_stopped_at_the_limit(tmp_path, server):
    _, base = server
    sent = {}
    Handler.routes["/endless"] = stream(b"x" * 65536, 4096, sent=sent)  # 256 MiB if all read
    with pytest.raises(DownloadError, match=r"/endless: the server sent more than the limit of "
                                            r"1,048,576 bytes"):
        download(base + "/endless", tmp_path / "x", progress=False, max_bytes=2**20)
    assert leftovers(tmp_path) == []
    time.sleep(0.2)  # let the server notice that the client hung up
    assert sent["bytes"] < 64 * 2**20


@pytest.mark.parametrize("max_bytes, ok", [(1000, True), (999, False), (None, True)])
def test_size_limit_boundary(tmp_path, server, max_bytes, ok):
    _, base = server
    Handler.routes["/exact"] = stream(b"y" * 500, 2)
    if ok:
        download(base + "/exact", tmp_path / "x", progress=False, max_bytes=max_bytes)
        assert (tmp_path / "x").read_bytes() == b"y" * 1000
    else:
        with pytest.raises(DownloadError, match="more than the limit of 999 bytes"):
            download(base + "/exact", tmp_path / "x", progress=False, max_bytes=max_bytes)


def test_cifar_download_is_capped_near_the_archive_size(tmp_path, server, archive, monkeypatch):
    assert 163 * 2**20 < cifar.ARCHIVE_MAX_BYTES < 200 * 2**20  # a little above 162.6 MiB
    _, base = server
    Handler.routes["/cifar-10-binary.tar.gz"] = (200, archive, None)
    monkeypatch.setattr(cifar, "ARCHIVE_MAX_BYTES", len(archive) - 1)
    with pytest.raises(DownloadError, match=rf"the server announces {len(archive):,} bytes"):
        CIFAR10(tmp_path, download=True, mirrors=[base], progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kwargs, message", [({"max_bytes": -1}, "max_bytes must be >= 0"),
                                             ({"deadline": 0}, "deadline must be > 0")])
def test_bad_limits_are_value_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        download("http://127.0.0.1:9/x", tmp_path / "x", progress=False, **kwargs)
