"""Training-image download through img2dataset's Ray distributor equals the local run."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest

pytestmark = pytest.mark.ray

pytest.importorskip("img2dataset")


def _jpeg(color) -> bytes:
    import io

    from PIL import Image

    b = io.BytesIO()
    Image.new("RGB", (96, 80), color).save(b, "JPEG")
    return b.getvalue()


@pytest.fixture(scope="module")
def server():
    """A bounded image server on 127.0.0.1: /img/<n>.jpg images, /missing.jpg 404, /page.html text."""
    images = {f"/img/{i}.jpg": _jpeg((20 * i % 255, 80, 160)) for i in range(8)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path in images:
                body, code, ctype = images[path], 200, "image/jpeg"
            elif path == "/page.html":
                body, code, ctype = b"<html>no image</html>", 200, "text/html"
            else:
                body, code, ctype = b"not found", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    th.join(5)


def _selection(base: str) -> pl.DataFrame:
    paths = [f"/img/{i}.jpg" for i in range(8)] + ["/missing.jpg", "/page.html"]
    n = len(paths)
    return pl.DataFrame({
        "condition": ["keyword"] * n, "occupation": ["nurse"] * n, "template": ["A photo of the face of a {}"] * n,
        "caption_id": list(range(1, n + 1)), "text": [f"caption {i}" for i in range(n)],
        "url": [base + p for p in paths], "rank": list(range(n)), "similarity": [0.5] * n,
    })


def test_ray_download_equals_local(server, two_nodes, tmp_path):
    from biasamp.engines.stages import fetch_training_images
    from biasamp.images.verify import read_image_bytes

    sel = _selection(server)
    opts = dict(source="download", timeout=3, deadline=5, threads=4, samples_per_shard=3)
    local = fetch_training_images(sel, tmp_path / "local", engine="local", **opts)
    ray_ = fetch_training_images(sel, tmp_path / "ray", engine=two_nodes, **opts)
    cols = ["caption_id", "status"]
    assert local.downloads.sort("caption_id").select(cols).equals(ray_.downloads.sort("caption_id").select(cols))
    assert (local.downloads["status"] == "ok").sum() == 8
    cfg = (tmp_path / "ray" / "_fetch" / "batch-0000.config.json").read_text()
    assert '"distributor": "ray"' in cfg
    a = local.downloads.filter(pl.col("status") == "ok").sort("caption_id")
    b = ray_.downloads.filter(pl.col("status") == "ok").sort("caption_id")
    for ra, rb in zip(a.iter_rows(named=True), b.iter_rows(named=True)):
        assert read_image_bytes(ra["image"], tmp_path / "local") == read_image_bytes(rb["image"], tmp_path / "ray")
