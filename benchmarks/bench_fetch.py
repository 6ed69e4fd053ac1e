"""Benchmark: `biasamp fetch --source download` against img2dataset's own CLI.

A local HTTP server (a thread in this process, 127.0.0.1 only, stopped at the end) serves
N small JPEGs. The same URL list is downloaded by
  1. the `img2dataset` command (webdataset output, original bytes kept, sha256), and
  2. `biasamp fetch` (same settings, plus decoding every image and writing the downloads
     table),
each as a fresh process, alternating, `--repeats` times; the best time of each counts.
Then `biasamp fetch` is re-run on its finished output: it must send no request.

Targets: biasamp's throughput ≥ 80% of img2dataset's; zero requests on the re-run.

    python benchmarks/bench_fetch.py [--n 1000] [--repeats 2] [--report-only]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_images(k: int = 16) -> list[bytes]:
    from PIL import Image

    out = []
    for i in range(k):
        b = io.BytesIO()
        Image.new("RGB", (128, 96), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(b, "JPEG", quality=85)
        out.append(b.getvalue())
    return out


class Server:
    def __init__(self, images: list[bytes]):
        self.hits = 0
        self.lock = threading.Lock()
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                with srv.lock:
                    srv.hits += 1
                try:
                    i = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                except ValueError:
                    self.send_error(404)
                    return
                body = images[i % len(images)]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def run(cmd: list[str], env: dict, limit: float) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=limit)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace")[-3000:])
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="number of images (keep it a few thousand at most)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--samples-per-shard", type=int, default=1000)
    ap.add_argument("--target", type=float, default=0.8, help="minimum throughput ratio biasamp / img2dataset")
    ap.add_argument("--limit", type=float, default=600, help="seconds allowed per command")
    ap.add_argument("--report-only", action="store_true", help="print the figures, never fail")
    args = ap.parse_args()
    if args.n > 5000:
        raise SystemExit("--n above 5000: this benchmark is meant for a few thousand small images")

    import polars as pl

    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1")
    bindir = Path(sys.executable).parent
    i2d_cli = shutil.which("img2dataset", path=str(bindir)) or shutil.which("img2dataset")
    # `python -m biasamp.images` runs the same `fetch` command as `biasamp fetch`, without
    # importing the other stages (so a stage under edit cannot break this benchmark)
    biasamp_cli = [sys.executable, "-m", "biasamp.images"]
    if not i2d_cli:
        raise SystemExit("needs the img2dataset and biasamp commands (pip install -e '.[fetch]')")
    work = Path(tempfile.mkdtemp(prefix="bench_fetch_"))
    try:
        with Server(make_images()) as srv:
            n = args.n
            sel = pl.DataFrame(
                {
                    "condition": "keyword",
                    "occupation": [f"occ{i % 20}" for i in range(n)],
                    "caption_id": list(range(n)),
                    "text": [f"caption {i}" for i in range(n)],
                    "url": [f"http://127.0.0.1:{srv.port}/img/{i}.jpg" for i in range(n)],
                }
            )
            sel.write_parquet(work / "selection.parquet")
            sel.select("url", "caption_id").write_parquet(work / "urls.parquet")
            common = dict(threads=args.threads, processes=args.processes, sps=args.samples_per_shard)
            times: dict[str, list[float]] = {"img2dataset": [], "biasamp": []}
            for r in range(args.repeats):
                out_i = work / f"i2d-{r}"
                cmd_i = [
                    i2d_cli, "--url_list", str(work / "urls.parquet"), "--input_format", "parquet",
                    "--url_col", "url", "--output_folder", str(out_i), "--output_format", "webdataset",
                    "--save_additional_columns", '["caption_id"]', "--processes_count", str(common["processes"]),
                    "--thread_count", str(common["threads"]), "--number_sample_per_shard", str(common["sps"]),
                    "--timeout", "10", "--disable_all_reencoding", "True", "--extract_exif", "False",
                    "--compute_hash", "sha256", "--enable_wandb", "False",
                ]
                out_b = work / f"biasamp-{r}"
                cmd_b = [
                    *biasamp_cli, "fetch", str(work / "selection.parquet"), "--out", str(out_b), "--source", "download",
                    "--format", "webdataset", "--processes", str(common["processes"]), "--threads", str(common["threads"]),
                    "--samples-per-shard", str(common["sps"]), "--timeout", "10", "--min-image-size", "0", "-q",
                ]
                order = [("img2dataset", cmd_i), ("biasamp", cmd_b)]
                if r % 2:
                    order.reverse()
                for name, cmd in order:
                    before = srv.hits
                    dt = run(cmd, env, args.limit)
                    times[name].append(dt)
                    print(f"  run {r + 1} {name:11s} {dt:6.2f} s  {n / dt:7.1f} img/s  ({srv.hits - before} requests)", flush=True)
            d = pl.read_parquet(work / "biasamp-0" / "downloads.parquet")
            ok = int((d["status"] == "ok").sum())
            before = srv.hits
            k = cmd_b.index("--out") + 1
            t_rerun = run(cmd_b[:k] + [str(work / "biasamp-0")] + cmd_b[k + 1 :], env, args.limit)
            rerun_requests = srv.hits - before
        best_i, best_b = min(times["img2dataset"]), min(times["biasamp"])
        ratio = best_i / best_b
        load = os.getloadavg()
        result = {
            "n": n,
            "ok": ok,
            "img2dataset_s": round(best_i, 2),
            "biasamp_s": round(best_b, 2),
            "img2dataset_img_per_s": round(n / best_i, 1),
            "biasamp_img_per_s": round(n / best_b, 1),
            "throughput_ratio": round(ratio, 3),
            "rerun_s": round(t_rerun, 2),
            "rerun_requests": rerun_requests,
            "load_avg_1_5_15": [round(x, 2) for x in load],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        failures = []
        if ok != n:
            failures.append(f"only {ok} of {n} images ok")
        if ratio < args.target:
            failures.append(f"throughput ratio {ratio:.2f} < {args.target}")
        if rerun_requests:
            failures.append(f"re-run sent {rerun_requests} requests")
        for f in failures:
            print("MISSED:", f)
        if not failures:
            print(f"targets met: ratio {ratio:.2f} ≥ {args.target}, re-run sent 0 requests")
        return 1 if failures and not args.report_only else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
