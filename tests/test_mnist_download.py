"""The download path against a local HTTP server on 127.0.0.1 (no internet needed)."""

import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

from xpnet.datasets import download as mnist
from xpnet.datasets import idx
from xpnet.errors import DataError

GOOD = idx.encode(np.arange(100, dtype=np.uint8))
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):
        kind, body = self.routes.get(self.path, ("missing", b""))
        if kind == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        announced = len(body) + (500 if kind == "truncated" else 0)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    Handler.routes = {}
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", Handler.routes
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_good_file_is_downloaded_verified_and_cached(server, tmp_path):
    base, routes = server
    routes["/m/file.gz"] = ("ok", GOOD)
    path = mnist.fetch("file.gz", "mnist", tmp_path, mirrors=[base + "/m/"], sha256=GOOD_SHA)
    assert path == tmp_path / "mnist" / "file.gz" and path.read_bytes() == GOOD
    routes.clear()  # second call: served from the cache, no request
    assert mnist.fetch("file.gz", "mnist", tmp_path, mirrors=[base + "/m/"], sha256=GOOD_SHA) == path


def test_corrupted_file_fails_the_checksum_and_leaves_nothing(server, tmp_path):
    base, routes = server
    routes["/m/file.gz"] = ("ok", GOOD[:-1] + b"\x01")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        mnist.fetch("file.gz", "mnist", tmp_path, mirrors=[base + "/m/"], sha256=GOOD_SHA)
    assert leftovers(tmp_path) == []


def test_truncated_download_is_reported_and_leaves_nothing(server, tmp_path):
    base, routes = server
    routes["/m/file.gz"] = ("truncated", GOOD)
    with pytest.raises(DataError, match="cut short"):
        mnist.fetch("file.gz", "mnist", tmp_path, mirrors=[base + "/m/"], sha256=GOOD_SHA)
    assert leftovers(tmp_path) == []


def test_server_down_gives_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port on which nothing listens any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="(?s)Connection refused.*--data-dir"):
        mnist.fetch(
            "file.gz", "mnist", tmp_path, mirrors=[f"http://127.0.0.1:{port}/"], sha256=GOOD_SHA, timeout=5
        )
    assert leftovers(tmp_path) == []


def test_next_mirror_is_tried_when_one_fails(server, tmp_path):
    base, routes = server
    routes["/b/file.gz"] = ("ok", GOOD)
    path = mnist.fetch("file.gz", "mnist", tmp_path, mirrors=[base + "/a/", base + "/b/"], sha256=GOOD_SHA)
    assert path.read_bytes() == GOOD


def test_all_four_files_through_the_server(server, tmp_path):
    base, routes = server
    rng = np.random.default_rng(0)
    digests = {}
    for key, name in mnist.FILES.items():
        n = 20 if key.startswith("train") else 5
        a = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            if key.endswith("images")
            else (np.arange(n) % 10).astype(np.uint8)
        )
        blob = idx.encode(a)
        routes[f"/x/{name}"] = ("ok", blob)
        digests[name] = hashlib.sha256(blob).hexdigest()
    arrays = mnist.load_arrays("mnist", data_dir=tmp_path, mirrors=[base + "/x/"], digests=digests)
    assert arrays["train_images"].shape == (20, 28, 28) and arrays["test_labels"].shape == (5,)


def test_known_digests_are_sha256_hex():
    for variant in ("mnist", "fashion-mnist"):
        assert set(mnist.SHA256[variant]) == set(mnist.FILES.values())
        for digest in mnist.SHA256[variant].values():
            assert len(digest) == 64 and int(digest, 16) >= 0
