"""A small CPU study end to end: time per stage, and the runner's overhead over calling the
stages directly.

Both sides run the same stage functions on the same inputs (the demo's synthetic corpus,
the offline MiniLM model, a tiny random diffusion pipeline, the dlib face filter, simulated
labels), each from a cold run directory. "Direct" calls the stage functions one after the
other by hand; "runner" goes through `biasamp.study.Runner` (plan, input fingerprints,
stage keys, done markers, manifest). Runs alternate (direct, runner, direct, runner …) after
one untimed warm-up (imports, model files in the page cache).

The overhead is judged on the runner's own bookkeeping, measured inside the runner run:
its wall time minus the time spent inside the stage functions, as a share of the latter.
The end-to-end comparison with the direct run (wall and CPU time, best of each) is printed
too; on a shared machine its noise is larger than the overhead. Target: under 5%.

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


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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
    direct_best = runner_best = direct_cpu = runner_cpu = float("inf")
    bookkeeping = []
    stage_times: dict[str, float] = {}
    try:
        run_direct(make_config(root / "inputs", args.captions, root / "warmup"))
        shutil.rmtree(root / "warmup", ignore_errors=True)
        for i in range(args.repeats):
            cfg = make_config(root / "inputs", args.captions, root / f"direct-{i}")
            t0, c0 = time.perf_counter(), _cpu()
            run_direct(cfg)
            direct, dcpu = time.perf_counter() - t0, _cpu() - c0
            cfg = make_config(root / "inputs", args.captions, root / f"runner-{i}")
            c0 = _cpu()
            total, stages = run_runner(cfg)
            rcpu = _cpu() - c0
            inside = sum(stages.values())
            bookkeeping.append((total - inside) / inside)
            print(f"repeat {i}: direct {direct:.2f} s wall / {dcpu:.2f} s CPU; runner {total:.2f} s wall / "
                  f"{rcpu:.2f} s CPU, of which {total - inside:.3f} s outside the stages")
            direct_best, direct_cpu = min(direct_best, direct), min(direct_cpu, dcpu)
            runner_cpu = min(runner_cpu, rcpu)
            if total < runner_best:
                runner_best, stage_times = total, stages
            shutil.rmtree(root / f"direct-{i}", ignore_errors=True)
            shutil.rmtree(root / f"runner-{i}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("time per stage (runner, best run):")
    for name, secs in stage_times.items():
        print(f"  {name:32s} {secs:8.2f} s")
    overhead = max(bookkeeping)
    print(f"runner bookkeeping (wall outside the stage functions / wall inside them), worst of "
          f"{args.repeats}: {100 * overhead:.2f}% (target < {100 * args.target:.0f}%)")
    print(f"end to end, best of {args.repeats}: direct {direct_best:.2f} s wall / {direct_cpu:.2f} s CPU; "
          f"runner {runner_best:.2f} s wall / {runner_cpu:.2f} s CPU; CPU ratio {runner_cpu / direct_cpu:.3f}, "
          f"wall ratio {runner_best / direct_best:.3f}")
    print(f"load average after: {os.getloadavg()}")
    ok = overhead < args.target
    print("PASS" if ok else "MISS")
    return 0 if ok or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
