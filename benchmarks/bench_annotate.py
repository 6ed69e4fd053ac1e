"""Benchmark: the annotation server with a 10,000-image task, driven over its HTTP API.

Targets (95th percentile, loopback, one keep-alive connection as a browser uses):
serving the next image (GET /api/state + GET /images/<next>) and saving an answer
(POST /api/answer, fsynced) each under 50 ms. The baseline, measured in the same run on
the same server, is a bare static-file GET (/static/app.css).

The server runs as a real `biasamp annotate serve` process whose log already holds
answers for most of the task (two other annotators), so replay and indexing are at scale.

    python benchmarks/bench_annotate.py              # exits 1 if a target is missed
    python benchmarks/bench_annotate.py --report-only
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image


def make_labels(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True)
    occupations = [f"occupation-{i:02d}" for i in range(50)]
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (i % 256, (i // 256) % 256, 99)).save(buf, format="PNG")
        (folder / "img" / f"{i:06d}.png").write_bytes(buf.getvalue())
        p = float(rng.random())
        rows.append({
            "item_id": f"it{i:06d}", "source": "gen" if i % 2 else "train", "face_status": "ok", "n_faces": 1,
            "p_female": p, "label": "female" if p >= 0.9 else "male" if p <= 0.1 else "ambiguous",
            "occupation": occupations[i % 50], "image": f"img/{i:06d}.png",
        })
    path = folder / "labels.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def prefill(task_dir: Path, item_ids: list[str], share: float) -> int:
    """Answers of two earlier annotators for the first `share` of the task, as the server writes them."""
    lines, seq = [], 0
    upto = int(len(item_ids) * share)
    for who in ("earlier-1", "earlier-2"):
        for k in range(upto):
            lines.append(json.dumps({"event": "label", "seq": seq, "annotator": who, "key": k, "item_id": item_ids[k],
                                     "label": "female" if k % 3 else "male", "time": "2026-01-01T00:00:00.000Z"}))
            seq += 1
    (task_dir / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return seq


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--answers", type=int, default=400, help="answers to time (bounded loop)")
    ap.add_argument("--target-ms", type=float, default=50.0)
    ap.add_argument("--report-only", action="store_true", help="report, never fail")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    from biasamp.annotate import load_task, sample_task

    work = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    proc = None
    try:
        t0 = time.perf_counter()
        labels = make_labels(work / "run", args.images)
        t1 = time.perf_counter()
        sample_task(labels, work / "task", n=args.images, seed=0)
        t2 = time.perf_counter()
        task = load_task(work / "task")
        n_prefilled = prefill(work / "task", task.items["item_id"].to_list(), 0.9)

        t3 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "biasamp.annotate", "serve", str(work / "task"), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        line = ""
        deadline = time.time() + 120
        while "http://" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        if "http://" not in line:
            print(f"server did not start: {line}", file=sys.stderr)
            return 2
        port = int(line.rsplit(":", 1)[1].strip().strip("/"))
        t4 = time.perf_counter()

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def get(path: str) -> bytes:
            conn.request("GET", path)
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (path, r.status, data[:200])
            return data

        def post(path: str, body: dict) -> dict:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            assert r.status == 200, (path, r.status, data[:200])
            return json.loads(data)

        for _ in range(20):  # warm-up
            get("/static/app.css")
        baseline, state_t, image_t, next_t, answer_t = [], [], [], [], []
        labels_cycle = ["female", "male", "unsure", "female", "male"]
        for i in range(args.answers):
            s = time.perf_counter()
            get("/static/app.css")
            baseline.append(time.perf_counter() - s)

            s = time.perf_counter()
            st = json.loads(get("/api/state?annotator=bench"))
            m = time.perf_counter()
            get(st["next"]["image"])
            e = time.perf_counter()
            state_t.append(m - s)
            image_t.append(e - m)
            next_t.append(e - s)

            s = time.perf_counter()
            post("/api/answer", {"annotator": "bench", "key": st["next"]["key"], "label": labels_cycle[i % 5]})
            answer_t.append(time.perf_counter() - s)
        conn.close()
        # everything timed is on disk
        n_lines = sum(1 for _ in open(work / "task" / "annotations.jsonl", "rb"))
        assert n_lines == n_prefilled + args.answers, (n_lines, n_prefilled, args.answers)

        base95 = pct(baseline, 95)
        rows = [("baseline static GET", baseline), ("next: state", state_t), ("next: image", image_t),
                ("next image (state + image)", next_t), ("save answer (POST, fsync)", answer_t)]
        print(f"task: {args.images} images ({t1 - t0:.1f} s to make, {t2 - t1:.1f} s to sample and copy); "
              f"log prefilled with {n_prefilled} answers; server up in {t4 - t3:.2f} s")
        print(f"{'request':30s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'p95/baseline':>13s}")
        for name, xs in rows:
            print(f"{name:30s} {pct(xs, 50):8.2f} {pct(xs, 95):8.2f} {pct(xs, 100):8.2f} {pct(xs, 95) / base95:13.2f}")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
              f"(1/5/15 min) on {os.cpu_count()} cores; {args.answers} timed answers")
        missed = [name for name, xs in rows[3:] if pct(xs, 95) >= args.target_ms]
        if missed:
            print(f"target missed (p95 >= {args.target_ms:g} ms): {', '.join(missed)}")
            return 0 if args.report_only else 1
        print(f"targets met: next image and save answer p95 < {args.target_ms:g} ms")
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            proc.stdout.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
