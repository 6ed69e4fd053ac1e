"""The annotation web app: a small standard-library HTTP server over one task folder.

What the browser gets: the static page (no external resources), the label set, each
annotator's own progress and the next image by an opaque key. What it never gets: item ids,
occupations, conditions, the classifier's labels or any file outside the task's images.

Routes::

    GET  /                      the page (static/index.html), GET /static/<file> its assets
    GET  /images/<file>         a task image (only names listed in items.parquet)
    GET  /api/task              title, label set, number of images, annotators and their progress
    GET  /api/state?annotator=  that annotator's progress and next image
    POST /api/answer            {"annotator", "key", "label"} -> the new state
    POST /api/undo              {"annotator"} -> the new state (the retracted answer is shown again)

Bad requests get a JSON `{"error": …}` with status 400/403/404/405/411/413/415. Only one
server may serve a folder at a time (`.annotate.lock`, held with an OS lock that dies with its
process, so a lock left by a killed server is taken over).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from biasamp.annotate.log import LABEL_VALUES, AnnotationLog, check_annotator
from biasamp.annotate.task import IMAGE_TYPES, IMAGES_DIR, Task, load_task
from biasamp.errors import BiasampError

LOCK_FILE = ".annotate.lock"
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
MAX_BODY = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- lock
class TaskLock:
    """`.annotate.lock` in the task folder: an exclusive OS lock plus the owner's PID and URL.

    The OS lock is released when its process dies, so a lock file left by a killed server is
    stale and is taken over; a live one is refused with its PID.
    """

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.fd: int | None = None
        self.stale_owner: dict | None = None  # what a lock left by a dead server said

    def acquire(self, info: dict) -> None:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = self._read_owner(fd)
                os.close(fd)
                who = f"process {owner.get('pid', '?')}" + (f" at {owner['url']}" if owner.get("url") else "")
                raise BiasampError(
                    f"task folder {self.path.parent} is already being served by {who}",
                    hint=f"open that server's address, or stop it first (lock file {self.path})",
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous owner removed the file while we opened it: try again
                os.close(fd)
                continue
            self.stale_owner = self._read_owner(fd) or None
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps({**info, "pid": os.getpid()}) + "\n").encode(), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise BiasampError(f"could not take the lock {self.path}", hint="try again")

    @staticmethod
    def _read_owner(fd: int) -> dict:
        try:
            data = os.pread(fd, 4096, 0)
            owner = json.loads(data) if data.strip() else {}
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}

    def update(self, info: dict) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (json.dumps({**info, "pid": os.getpid()}) + "\n").encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)  # closing drops the OS lock
        self.fd = None


# --------------------------------------------------------------------------- the app
class AnnotationApp:
    """Request handling that does not depend on the HTTP plumbing."""

    def __init__(self, task: Task):
        self.task = task
        self.root = Path(os.path.realpath(task.folder / IMAGES_DIR))
        self.log = AnnotationLog(task.log_path, task.items["item_id"].to_list())
        self.image_names: list[str] = []
        self.images: dict[str, Path] = {}
        for rel in task.items["image"].to_list():
            name = rel.rsplit("/", 1)[-1]
            self.image_names.append(name)
            self.images[name] = task.folder / rel
        self.static = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in STATIC_TYPES}
        labels = task.meta.get("labels") or []
        by_value = {d.get("value"): d for d in labels if isinstance(d, dict)}
        self.labels = [
            {"value": v, "text": str(by_value.get(v, {}).get("text", v)), "key": str(by_value.get(v, {}).get("key", ""))}
            for v in LABEL_VALUES
        ]

    # -- views
    def task_info(self) -> dict:
        return {
            "title": str(self.task.meta.get("title", "")),
            "labels": self.labels,
            "total": self.task.n_items,
            "annotators": self.log.progress(),
        }

    def state(self, annotator: str, **extra) -> dict:
        st = self.log.state(annotator)
        nxt, pre = st.pop("next"), st.pop("prefetch")
        st["next"] = {"key": nxt, "image": "/images/" + self.image_names[nxt]} if nxt is not None else None
        st["prefetch"] = "/images/" + self.image_names[pre] if pre is not None else None
        st["finished"] = nxt is None
        st.update(extra)
        return st

    def answer(self, body: dict) -> dict:
        annotator = _annotator_of(body)
        key, label = body.get("key"), body.get("label")
        if isinstance(key, bool) or not isinstance(key, int):
            raise _HTTPError(400, "'key' must be an integer")
        if not 0 <= key < self.task.n_items:
            raise _HTTPError(400, f"'key' {key} is not in this task (0..{self.task.n_items - 1})")
        if label not in LABEL_VALUES:
            raise _HTTPError(400, f"'label' must be one of {', '.join(LABEL_VALUES)} (got {label!r})")
        self.log.label(annotator, key, label)
        return self.state(annotator)

    def undo(self, body: dict) -> dict:
        annotator = _annotator_of(body)
        target = self.log.undo(annotator)
        undone = {"key": target["key"], "label": target["label"]} if target else None
        return self.state(annotator, undone=undone)

    def image_path(self, raw_name: str) -> Path:
        name = unquote(raw_name)
        if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
            raise _HTTPError(403, "refused: image names are plain file names inside the task")
        path = self.images.get(name)
        if path is None:
            raise _HTTPError(404, "no such image in this task")
        real = Path(os.path.realpath(path))
        if self.root not in real.parents:
            raise _HTTPError(403, "refused: the image resolves outside the task's images folder")
        return real


def _annotator_of(body: dict) -> str:
    try:
        return check_annotator(body.get("annotator"))
    except ValueError as e:
        raise _HTTPError(400, f"'annotator': {e}") from None


# --------------------------------------------------------------------------- HTTP plumbing
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "biasamp-annotate"
    sys_version = ""
    timeout = 120  # idle keep-alive connections end after this
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive response
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    # -- responses
    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _dispatch(self, fn) -> None:
        try:
            self._check_host()
            fn()
        except _HTTPError as e:
            self._error(e.status, e.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # never a traceback page; the server keeps running
            self.close_connection = True
            self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _check_host(self) -> None:
        allowed = self.server.allowed_hosts
        host = self.headers.get("Host")
        if allowed and host is not None and host.lower() not in allowed:
            raise _HTTPError(403, "refused: unexpected Host header")

    # -- methods
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._error(405, f"method {self.command} not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed  # noqa: N815

    def _get(self) -> None:
        app = self.server.app
        raw = urlsplit(self.path)
        path = raw.path
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path == "/favicon.ico":
            return self._static("favicon.svg")
        if path.startswith("/static/"):
            return self._static(unquote(path[len("/static/"):]))
        if path.startswith("/images/"):
            file = app.image_path(path[len("/images/"):])
            ctype = IMAGE_TYPES.get(file.suffix.lower(), "application/octet-stream")
            try:
                data = file.read_bytes()
            except OSError:
                raise _HTTPError(404, "image file missing from the task folder") from None
            return self._send(200, data, ctype, cache="private, max-age=86400, immutable")
        if path == "/api/task":
            return self._json(200, app.task_info())
        if path == "/api/state":
            q = parse_qs(raw.query)
            return self._json(200, app.state(_annotator_of({"annotator": (q.get("annotator") or [None])[0]})))
        if path.startswith("/api/"):
            raise _HTTPError(404 if path not in ("/api/answer", "/api/undo") else 405, f"no GET route {path}")
        raise _HTTPError(404, "not found")

    def _static(self, name: str) -> None:
        file = self.server.app.static.get(name)
        if file is None or "/" in name or "\\" in name:
            raise _HTTPError(404, "not found")
        ctype = STATIC_TYPES[file.suffix]
        extra = {"Content-Security-Policy": CSP} if file.suffix == ".html" else None
        self._send(200, file.read_bytes(), ctype, cache="no-cache", extra=extra)

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise _HTTPError(411, "a Content-Length header is required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise _HTTPError(400, "bad Content-Length header") from None
        if n > MAX_BODY:
            self.close_connection = True
            raise _HTTPError(413, f"request body larger than {MAX_BODY} bytes")
        data = self.rfile.read(n)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _HTTPError(415, "send the body as application/json")
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _HTTPError(400, f"malformed JSON body: {e}") from None
        if not isinstance(obj, dict):
            raise _HTTPError(400, "the JSON body must be an object")
        return obj

    def _post(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        if path == "/api/answer":
            body = self._body()
            return self._json(200, app.answer(body))
        if path == "/api/undo":
            body = self._body()
            return self._json(200, app.undo(body))
        self.close_connection = True
        raise _HTTPError(404 if path.startswith("/api/") else 405, f"no POST route {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, app: AnnotationApp, verbose: bool = False):
        self.app = app
        self.verbose = verbose
        self.allowed_hosts: set[str] = set()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.address_family = family
        super().__init__(addr, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class AnnotationServer:
    """One task folder served over HTTP; use `start()`/`stop()` (or `with`) or `serve_forever()`."""

    def __init__(self, folder: str | Path, *, host: str = "127.0.0.1", port: int = 8765, verbose: bool = False):
        self.folder = Path(folder)
        task = load_task(self.folder)
        self.lock = TaskLock(self.folder)
        self.lock.acquire({"host": host, "port": port, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        try:
            self.app = AnnotationApp(task)
            try:
                self.httpd = _Server((host, port), self.app, verbose=verbose)
            except OSError as e:
                raise BiasampError(
                    f"cannot listen on {host}:{port}: {e.strerror or e}",
                    hint="pick another --port (0 picks a free one)",
                ) from None
        except BaseException:
            if getattr(self, "app", None) is not None:
                self.app.log.close()
            self.lock.release()
            raise
        self.host = host
        self.port = self.httpd.server_address[1]
        loopback = {"127.0.0.1", "localhost", "::1"}
        if host in loopback or host.startswith("127."):
            names = {"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]"}
            self.httpd.allowed_hosts = {f"{n}:{self.port}" for n in names}
        self.lock.update({"host": host, "port": self.port, "url": self.url})
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}/"

    @property
    def skipped_log_lines(self) -> list[int]:
        return self.app.log.skipped_lines

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.stop()

    def start(self) -> AnnotationServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.close_connections()
        self.httpd.server_close()
        self.app.log.close()
        self.lock.release()

    def __enter__(self) -> AnnotationServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_task(
    folder: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    block: bool = True,
    open_browser: bool = False,
    verbose: bool = False,
    announce=print,
) -> AnnotationServer:
    """Serve an annotation task folder. `port=0` picks a free port; the URL is announced.

    With `block=False` the server runs in a background thread and is returned (call `stop()`);
    with `block=True` it serves until interrupted, then releases the folder's lock.
    """
    server = AnnotationServer(folder, host=host, port=port, verbose=verbose)
    previous = None
    if block and threading.current_thread() is threading.main_thread():
        # SIGTERM stops the server like Ctrl-C: the lock file is removed on the way out
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if announce is not None:
            announce(f"Annotation task {server.folder} ({server.app.task.n_items} images) at {server.url}")
            if server.skipped_log_lines:
                announce(f"note: skipped {len(server.skipped_log_lines)} unreadable line(s) of {server.app.task.log_path}")
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        if not block:
            return server.start()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    except BaseException:
        server.stop()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    server.stop()
    if announce is not None:
        announce(f"stopped; answers are in {server.app.task.log_path}")
    return server


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
