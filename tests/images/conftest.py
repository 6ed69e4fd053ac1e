"""A bounded image server on 127.0.0.1 for the fetch tests (a thread with http.server)."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SLOW_S = 20.0  # the /slow route answers after this long (tests use timeout 3 s)
HANG_MAX_S = 30.0  # /hang and /trickle give up after this long, whatever happens


def make_image(fmt: str = "JPEG", size=(160, 120), color=(200, 30, 30)) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.new("RGB", size, color).save(b, fmt)
    return b.getvalue()


class ImageServer:
    def __init__(self):
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.jpeg = make_image("JPEG")
        self.png = make_image("PNG", (100, 140), (10, 120, 240))
        self.tiny = make_image("JPEG", (20, 20))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", ctype="image/jpeg", extra=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                with server.lock:
                    server.hits[path] += 1
                try:
                    if path.startswith("/img/") and path.endswith(".png"):
                        self._send(200, server.png, "image/png")
                    elif path.startswith("/img/"):
                        self._send(200, server.jpeg)
                    elif path == "/tiny.jpg":
                        self._send(200, server.tiny)
                    elif path == "/corrupt.jpg":
                        self._send(200, server.jpeg[: len(server.jpeg) // 3])
                    elif path == "/garbage.jpg":
                        self._send(200, b"\x00\x01not an image at all" * 10)
                    elif path == "/page.html":
                        self._send(200, b"<html><body>not an image</body></html>", "text/html")
                    elif path == "/noai.jpg":
                        self._send(200, server.jpeg, extra={"X-Robots-Tag": "noai"})
                    elif path == "/slow.jpg":
                        server.stop.wait(SLOW_S)
                        self._send(200, server.jpeg)
                    elif path == "/hang.jpg":
                        server.stop.wait(HANG_MAX_S)
                    elif path == "/trickle.jpg":  # headers at once, then one byte every 0.4 s
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.end_headers()
                        t0 = time.monotonic()
                        for b in server.jpeg:
                            if server.stop.wait(0.4) or time.monotonic() - t0 > HANG_MAX_S:
                                break
                            self.wfile.write(bytes([b]))
                            self.wfile.flush()
                    elif path == "/error500.jpg":
                        self._send(500, b"oops", "text/plain")
                    else:
                        self._send(404, b"not found", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def total_hits(self) -> int:
        with self.lock:
            return sum(self.hits.values())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def image_server():
    with ImageServer() as s:
        yield s


ROUTES = {
    "/img/a.jpg": "ok",
    "/img/b.png": "ok",
    "/img/c.jpg": "ok",
    "/tiny.jpg": "too_small",
    "/corrupt.jpg": "not_an_image",
    "/garbage.jpg": "not_an_image",
    "/page.html": "not_an_image",
    "/noai.jpg": "disallowed",
    "/slow.jpg": "timeout",
    "/hang.jpg": "timeout",
    "/trickle.jpg": "timeout",
    "/error500.jpg": "http_error",
    "/missing.jpg": "http_error",
}


def selection_frame(rows: list[tuple[str, str, int, str | None]]):
    """rows: (condition, occupation, caption_id, url) -> a selection table."""
    import polars as pl

    return pl.DataFrame(
        {
            "condition": [r[0] for r in rows],
            "occupation": [r[1] for r in rows],
            "template": ["A photo of the face of a {}"] * len(rows),
            "caption_id": [r[2] for r in rows],
            "text": [f"caption {r[2]}" for r in rows],
            "url": [r[3] for r in rows],
            "rank": list(range(len(rows))),
            "similarity": [0.5] * len(rows),
        },
        schema_overrides={"url": pl.Utf8},
    )


@pytest.fixture(scope="session")
def routes() -> dict:
    return dict(ROUTES)


@pytest.fixture(scope="session")
def make_selection():
    return selection_frame
