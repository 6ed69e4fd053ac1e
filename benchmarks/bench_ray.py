"""Benchmark of the caption query on the Ray engine (`biasamp.engines`).

    python benchmarks/bench_ray.py                 # 12M captions in 24 files, best of 3
    python benchmarks/bench_ray.py --captions 2000000 --files 8 --repeat 1
    python benchmarks/bench_ray.py --report-only   # never exit non-zero

Measures, in one run, on a synthetic corpus in the LAION-2B-en schema (generated once into
--cache, outside the repository):

1. local engine, 1 CPU: `query_corpus(engine="local", workers=1)` in a child process with
   POLARS_MAX_THREADS=1 (one core's worth of work);
2. Ray engine, one node with 1 CPU (a real `ray start` node on 127.0.0.2; tasks get
   POLARS_MAX_THREADS=1);
3. Ray engine, two nodes with 1 CPU each (127.0.0.2 + 127.0.0.3, loopback only).

Both clusters are started first (their start-up is printed, not timed); then the three
settings run in turn, --repeat rounds, so that they see the same load on a shared machine.
Each Ray timing joins its cluster with a fresh driver and warms the workers up first (two
trivial tasks per CPU), so the figures are the stage's, not Ray's start-up. The three
runs' mentions are checked to be identical.

Targets (exit 1 if missed, unless --report-only): two nodes >= 1.7x the throughput of one
node; one Ray node within 1.3x of the local engine's time. The machine may be shared: the
load average is printed with the figures, and each timing is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SCALE = 1.7
TARGET_OVERHEAD = 1.3


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def corpus(cache: Path, n: int, files: int, seed: int = 0) -> Path:
    from biasamp.corpus.synthetic import make_corpus

    per = -(-n // files)
    d = cache / f"synthetic-{n}-{files}files-seed{seed}"
    if (d / "synthetic.json").exists():
        return d
    t = time.time()
    print(f"generating {n:,} synthetic captions in {files} files into {d} (once) …", flush=True)
    make_corpus(n, seed=seed, out=d, rows_per_file=per, compression="snappy")
    print(f"  done in {time.time() - t:.0f} s", flush=True)
    return d


def _child(corpus_dir: str, out: str) -> None:
    """The local engine on one core (POLARS_MAX_THREADS=1 is set by the parent)."""
    from biasamp.engines.stages import query_corpus

    t, c = time.perf_counter(), time.process_time()
    query_corpus(corpus_dir, out, engine="local", names=None, progress=False, workers=1, overwrite=True)
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c}))


def run_local(corpus_dir: Path, out: Path) -> tuple[float, float]:
    env = dict(os.environ, POLARS_MAX_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, __file__, "--_child", str(corpus_dir), str(out)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"local run failed:\n{r.stderr[-3000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["seconds"], d["cpu"]


def cluster_cpu(cluster) -> float:
    """CPU seconds used so far by the processes of `cluster` (raylets, workers, …)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in cluster._own():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / tick


def _warm(engine, n: int) -> None:
    def f(_):
        import polars  # noqa: F401 - the import is what warms a worker

        import biasamp.corpus.query  # noqa: F401

        time.sleep(0.5)
        return os.getpid()

    list(engine.map(f, range(2 * n)))


def time_ray(cluster, corpus_dir: Path, out: Path, nodes: int) -> tuple[float, float]:
    """Join `cluster` with a fresh driver, warm its workers up, time one query, leave.
    Returns (wall seconds, CPU seconds of the cluster's processes and this driver)."""
    import ray

    from biasamp.engines.ray_engine import RayEngine
    from biasamp.engines.stages import query_corpus

    engine = RayEngine(cluster.address, node_ip_address=cluster.head_ip, env={"POLARS_MAX_THREADS": "1"}).connect()
    try:
        cluster.wait_for_nodes(nodes)
        _warm(engine, nodes)
        t, c0, d0 = time.perf_counter(), cluster_cpu(cluster), time.process_time()
        query_corpus(str(corpus_dir), out, engine=engine, names=None, progress=False, overwrite=True)
        wall = time.perf_counter() - t
        return wall, cluster_cpu(cluster) - c0 + time.process_time() - d0
    finally:
        engine.close()
        if ray.is_initialized():
            ray.shutdown()


def same_mentions(*outs: Path) -> bool:
    from biasamp.corpus.query import read_mentions

    frames = [read_mentions(o).sort("caption_id", "occupation", "source") for o in outs]
    return all(f.equals(frames[0]) for f in frames[1:]) and frames[0].height > 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=12_000_000)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per setting (the best counts)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "biasamp-bench-ray")
    ap.add_argument("--report-only", action="store_true", help="print the figures, never fail")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        _child(*a._child)
        return 0
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    a.cache.mkdir(parents=True, exist_ok=True)
    c = corpus(a.cache, a.captions, a.files)
    outs = {k: a.cache / f"out-{k}" for k in ("local", "ray1", "ray2")}
    print(f"corpus: {a.captions:,} captions in {a.files} files; {load()}", flush=True)

    from biasamp.engines.cluster import LocalCluster

    t0 = time.perf_counter()
    one = LocalCluster(nodes=1, cpus_per_node=1, object_store_memory=200_000_000, first_ip=2).start()
    two = LocalCluster(nodes=2, cpus_per_node=1, object_store_memory=200_000_000, first_ip=4)
    try:
        two.start()
        print(f"clusters started in {time.perf_counter() - t0:.1f} s (one node on 127.0.0.2; two nodes on 127.0.0.4-5)", flush=True)
        local, ray1, ray2 = [], [], []
        cpu = {"local": [], "ray1": [], "ray2": []}
        for r in range(a.repeat):  # interleaved, so that the three settings see the same load
            for name, ts, fn in (("local", local, lambda: run_local(c, outs["local"])),
                                 ("ray1", ray1, lambda: time_ray(one, c, outs["ray1"], 1)),
                                 ("ray2", ray2, lambda: time_ray(two, c, outs["ray2"], 2))):
                wall, used = fn()
                ts.append(wall)
                cpu[name].append(used)
            print(f"  round {r + 1}: local {local[-1]:.2f} s ({cpu['local'][-1]:.1f} CPU-s), ray 1 node {ray1[-1]:.2f} s "
                  f"({cpu['ray1'][-1]:.1f} CPU-s), ray 2 nodes {ray2[-1]:.2f} s ({cpu['ray2'][-1]:.1f} CPU-s); {load()}", flush=True)
    finally:
        one.stop()
        two.stop()
    for name, ts in (("local engine, 1 CPU:  ", local), ("ray, 1 node x 1 CPU: ", ray1), ("ray, 2 nodes x 1 CPU:", ray2)):
        print(f"{name} best {min(ts):6.2f} s  (runs {', '.join(f'{x:.2f}' for x in ts)})")

    t_local, t1, t2 = min(local), min(ray1), min(ray2)
    scale = t1 / t2
    overhead = t1 / t_local
    same = same_mentions(outs["local"], outs["ray1"], outs["ray2"])
    print()
    print(f"throughput: local {a.captions / t_local / 1e6:.2f}M, ray 1 node {a.captions / t1 / 1e6:.2f}M, "
          f"ray 2 nodes {a.captions / t2 / 1e6:.2f}M captions/s")
    print(f"two nodes vs one node: {scale:.2f}x throughput   (target >= {TARGET_SCALE}x)")
    print(f"ray 1 node vs local:   {overhead:.2f}x time         (target <= {TARGET_OVERHEAD}x)")
    print(f"CPU seconds per run (median): local {sorted(cpu['local'])[len(local) // 2]:.1f}, ray 1 node "
          f"{sorted(cpu['ray1'])[len(ray1) // 2]:.1f}, ray 2 nodes {sorted(cpu['ray2'])[len(ray2) // 2]:.1f} "
          "(cluster processes + driver): the work does not grow with the nodes")
    print(f"identical mentions on all three: {same}")
    print(load())
    for o in outs.values():
        shutil.rmtree(o, ignore_errors=True)
    ok = scale >= TARGET_SCALE and overhead <= TARGET_OVERHEAD and same
    if not ok and not a.report_only:
        print("TARGET MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
