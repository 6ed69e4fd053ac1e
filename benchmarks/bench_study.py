"""A small CPU study end to end: time per stage, and the runner's overhead over calling the
stages directly.

Both sides run the same stage functions on the same inputs (the demo's synthetic corpus,
the offline MiniLM model, a tiny random diffusion pipeline, the dlib face filter, simulated
labels), each from a cold run directory. "Direct" calls the stage functions one after the
other by hand; "runner" goes through `biasamp.study.Runner` (plan, input fingerprints,
stage keys, done markers, manifest). Runs alternate (direct, runner, direct, runner …) and
the best time of each is kept. Target: runner overhead under 5%.

    python benchmarks/bench_study.py [--captions 6000] [--repeats 2] [--report-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_config(root: Path, captions: int, out: Path):
    from biasamp.study.config import parse_config
    from biasamp.study.demo import write_demo_inputs

    path = write_demo_inputs(root, n_captions=captions)
    data = tomllib.loads(path.read_text())
    data["study"]["out"] = str(out)
    data["selection"].update(n=40, k=30)
    data["models"][0].update(images_per_prompt=30)
    data["measure"]["n_boot"] = 500
    return parse_config(data, path=str(path), base_dir=path.parent)


def run_direct(cfg) -> dict[str, float]:
    """Call each stage function by hand, in order, with the folders the runner would use."""
    from biasamp.study import _set_threads
    from biasamp.study.pipeline import build_stages
    from biasamp.study.runner import StageContext

    _set_threads(cfg.study.threads)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    times, dirs = {}, {}
    for s in build_stages(cfg):
        d = out / "direct" / s.name
        d.mkdir(parents=True, exist_ok=True)
        dirs[s.name] = d
        t0 = time.perf_counter()
        s.fn(StageContext(cfg, d, {x: dirs[x] for x in s.deps}, out, show_progress=False))
        times[s.name] = time.perf_counter() - t0
    return times


def run_runner(cfg) -> tuple[float, dict[str, float]]:
    from biasamp.study import run_study

    t0 = time.perf_counter()
    result = run_study(cfg, show_progress=False)
    return time.perf_counter() - t0, {s["name"]: s["seconds"] for s in result.stages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captions", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.05)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="biasamp-bench-study-"))
    print(f"load average before: {os.getloadavg()}")
    direct_best = runner_best = float("inf")
    stage_times: dict[str, float] = {}
    try:
        for i in range(args.repeats):
            cfg = make_config(root / "inputs", args.captions, root / f"direct-{i}")
            t0 = time.perf_counter()
            times = run_direct(cfg)
            direct = time.perf_counter() - t0
            cfg = make_config(root / "inputs", args.captions, root / f"runner-{i}")
            total, stages = run_runner(cfg)
            print(f"repeat {i}: direct {direct:.2f} s, runner {total:.2f} s")
            if direct < direct_best:
                direct_best = direct
            if total < runner_best:
                runner_best, stage_times = total, stages
            shutil.rmtree(root / f"direct-{i}", ignore_errors=True)
            shutil.rmtree(root / f"runner-{i}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("time per stage (runner, best run):")
    for name, secs in stage_times.items():
        print(f"  {name:32s} {secs:8.2f} s")
    overhead = runner_best / direct_best - 1
    print(f"direct (best of {args.repeats}): {direct_best:.2f} s; runner: {runner_best:.2f} s; "
          f"overhead {100 * overhead:+.1f}% (target < {100 * args.target:.0f}%)")
    print(f"load average after: {os.getloadavg()}")
    ok = overhead < args.target
    print("PASS" if ok else "MISS")
    return 0 if ok or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
