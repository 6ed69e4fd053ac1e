"""The annotation server over HTTP: the API, bad input, path traversal, locking, crash safety."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import pytest

from biasamp.annotate import load_task, serve_task
from biasamp.annotate.server import LOCK_FILE
from biasamp.errors import BiasampError


def request(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        h = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        conn.close()


def api(srv, method, path, body=None):
    status, ctype, data = request(srv, method, path, body)
    assert status == 200, data
    return json.loads(data)


def test_label_flow_and_nothing_about_the_item_is_sent(server, task_dir):
    task = load_task(task_dir)
    bodies = []

    def get(path):
        status, _, data = request(server, "GET", path)
        bodies.append(data)
        return status, data

    for path in ("/", "/static/app.js", "/static/app.css", "/api/task"):
        assert get(path)[0] == 200
    st = json.loads(get("/api/state?annotator=ana")[1])
    assert st["next"]["key"] == 0 and st["done"] == 0 and st["total"] == task.n_items
    for i in range(4):
        status, _, data = request(server, "POST", "/api/answer",
                                  json.dumps({"annotator": "ana", "key": st["next"]["key"], "label": "male"}).encode(),
                                  {"Content-Type": "application/json"})
        bodies.append(data)
        st = json.loads(data)
        status, img = get(st["next"]["image"])
        assert status == 200
        assert img == (task_dir / task.items["image"][st["next"]["key"]]).read_bytes()
    assert st["done"] == 4 and st["next"]["key"] == 4 and st["can_undo"]
    undone = api(server, "POST", "/api/undo", {"annotator": "ana"})
    assert undone["undone"] == {"key": 3, "label": "male"} and undone["next"]["key"] == 3 and undone["done"] == 3
    blob = b"\n".join(bodies).decode("utf-8", "replace")
    secrets = set(task.items["item_id"]) | set(task.items["occupation"]) | set(task.items["condition"])
    secrets |= {"ambiguous", "p_female", "occupation", "stratum"}
    leaked = [s for s in secrets if s in blob]
    assert not leaked
    # every answer is on disk as it is given
    lines = (task_dir / "annotations.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["label"] * 4 + ["undo"]


def test_html_is_self_contained(server):
    status, ctype, data = request(server, "GET", "/")
    html = data.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert "http://" not in html and "https://" not in html and "<script>" not in html
    for name in ("app.js", "app.css"):
        text = request(server, "GET", f"/static/{name}")[2].decode()
        assert "http://" not in text and "https://" not in text and "@import" not in text


@pytest.mark.parametrize(
    "path",
    [
        "/images/../task.json",
        "/images/..%2ftask.json",
        "/images/%2e%2e%2fitems.parquet",
        "/images/%2E%2E",
        "/images/..%5c..%5ctask.json",
        "/images//etc/passwd",
        "/images/%2Fetc%2Fpasswd",
        "/images/%00",
        "/images/000000.png%00.txt",
        "/static/../task.json",
        "/static/%2e%2e/%2e%2e/task.json",
        "/static/..%2f..%2fitems.parquet",
        "/../task.json",
        "/task.json",
        "/items.parquet",
        "/annotations.jsonl",
        "/images/",
    ],
)
def test_path_traversal_is_refused(server, task_dir, path):
    status, ctype, data = request(server, "GET", path)
    assert status in (403, 404)
    assert ctype.startswith("application/json") and "error" in json.loads(data)
    assert b"biasamp-annotation-task" not in data and b"PAR1" not in data and b"root:" not in data


def test_symlinked_image_outside_is_refused(server, task_dir, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret bytes")
    img = task_dir / load_task(task_dir).items["image"][0]
    img.unlink()
    img.symlink_to(secret)
    status, _, data = request(server, "GET", f"/images/{img.name}")
    assert status == 403 and b"secret" not in data
    # a link to another file of the task folder is refused too
    img.unlink()
    img.symlink_to(task_dir / "items.parquet")
    status, _, data = request(server, "GET", f"/images/{img.name}")
    assert status == 403 and b"PAR1" not in data


@pytest.mark.parametrize(
    "body, ctype, status, message",
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"\xff\xfe", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "must be an object"),
        (b'{"key": 0, "label": "male"}', "application/json", 400, "annotator"),
        (b'{"annotator": "ana", "key": 0, "label": "woman"}', "application/json", 400, "'label' must be one of"),
        (b'{"annotator": "ana", "key": 0, "label": null}', "application/json", 400, "'label' must be one of"),
        (b'{"annotator": "ana", "key": 999, "label": "male"}', "application/json", 400, "not in this task"),
        (b'{"annotator": "ana", "key": "0", "label": "male"}', "application/json", 400, "integer"),
        (b'{"annotator": "ana", "key": true, "label": "male"}', "application/json", 400, "integer"),
        (b'{"annotator": "<script>", "key": 0, "label": "male"}', "application/json", 400, "annotator"),
        (b'{"annotator": "ana", "key": 0, "label": "male"}', "text/plain", 415, "application/json"),
        (b"x" * 20000, "application/json", 413, "larger than"),
    ],
)
def test_bad_posts_get_a_json_error_and_change_nothing(server, task_dir, body, ctype, status, message):
    got, rtype, data = request(server, "POST", "/api/answer", body, {"Content-Type": ctype})
    assert got == status and rtype.startswith("application/json")
    err = json.loads(data)
    assert message in err["error"]
    assert not (task_dir / "annotations.jsonl").read_bytes()
    assert api(server, "GET", "/api/state?annotator=ana")["done"] == 0  # still serving


def test_other_bad_requests(server):
    assert request(server, "GET", "/api/answer")[0] == 405
    assert request(server, "PUT", "/api/answer", b"{}")[0] == 405
    assert request(server, "POST", "/api/nothing", {"annotator": "a"})[0] == 404
    assert request(server, "GET", "/api/state")[0] == 400
    assert request(server, "GET", "/api/state?annotator=" + "x" * 80)[0] == 400
    assert request(server, "POST", "/api/undo", {"annotator": "nobody"})[0] == 200  # nothing to undo is fine
    # no Content-Length: refused, not waited for
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n\r\n" % server.port)
        assert b" 411 " in s.recv(4096).split(b"\r\n")[0]
    # a page from another site cannot reach the server through a rebound host name
    status, _, data = request(server, "GET", "/api/task", headers={"Host": "evil.example:80"})
    assert status == 403 and b"Host" in data


def test_concurrent_answers_all_land(server, task_dir):
    n = load_task(task_dir).n_items
    errors = []

    def work(name):
        try:
            for k in range(n):
                api(server, "POST", "/api/answer", {"annotator": name, "key": k, "label": "female"})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"a{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    lines = [json.loads(x) for x in (task_dir / "annotations.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * n and sorted(e["seq"] for e in lines) == list(range(4 * n))
    assert api(server, "GET", "/api/task")["annotators"] == {f"a{i}": n for i in range(4)}


def test_second_server_on_the_same_folder_is_refused(server, task_dir):
    with pytest.raises(BiasampError, match=rf"already being served by process {os.getpid()} at {server.url}"):
        serve_task(task_dir, port=0, block=False, announce=None)
    assert api(server, "GET", "/api/task")["total"] > 0  # the first one is unharmed
    server.stop()
    assert not (task_dir / LOCK_FILE).exists()
    again = serve_task(task_dir, port=0, block=False, announce=None)
    again.stop()


def test_a_stale_lock_is_taken_over(task_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (task_dir / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:1/"}))
    srv = serve_task(task_dir, port=0, block=False, announce=None)
    try:
        assert srv.lock.stale_owner["pid"] == dead.pid
        assert json.loads((task_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        srv.stop()


def test_port_in_use_is_a_clear_error(server, tmp_path, labels_path):
    from biasamp.annotate import sample_task

    sample_task(labels_path, tmp_path / "other", n=3)
    with pytest.raises(BiasampError, match="cannot listen"):
        serve_task(tmp_path / "other", port=server.port, block=False, announce=None)
    assert not (tmp_path / "other" / LOCK_FILE).exists()


@pytest.mark.slow
def test_killing_the_server_loses_nothing(task_dir):
    """A real `biasamp annotate serve` process, killed with SIGKILL after three answers."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "biasamp.annotate", "serve", str(task_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    try:
        line = ""
        deadline = time.time() + 60
        while "http://" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "http://127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))

        class P:  # what request() needs
            pass

        remote = P()
        remote.port = port
        for k in range(3):
            api(remote, "POST", "/api/answer", {"annotator": "ana", "key": k, "label": "female"})
        # a second server is refused while that process lives
        with pytest.raises(BiasampError, match=f"process {proc.pid}"):
            serve_task(task_dir, port=0, block=False, announce=None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    assert (task_dir / LOCK_FILE).exists()  # left behind by the killed process: stale
    srv = serve_task(task_dir, port=0, block=False, announce=None)
    try:
        st = api(srv, "GET", "/api/state?annotator=ana")
        assert st["done"] == 3 and st["next"]["key"] == 3
    finally:
        srv.stop()


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_frees_the_folder(task_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "biasamp.annotate", "serve", str(task_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        deadline = time.time() + 60
        while "http://" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        assert (task_dir / LOCK_FILE).exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "stopped; answers are in" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
    assert not (task_dir / LOCK_FILE).exists()
