"""Benchmark: the cluster bootstrap of `biasamp.measure.measure` against a plain pandas loop.

Study size (defaults): 150 occupations × 5 conditions, 1,000 images per side and
occupation. Training images are clusters of one (captions); generated images come from 5
prompt templates of 200 images each, about 5% of them excluded, so templates hold unequal
numbers of confident images. Both the vectorised bootstrap and the baseline run the same
two-stage procedure (groups with replacement within an occupation, then images within
groups).

Targets: 10,000 replicates in under 5 s, and at least 20× faster than the baseline, a
straightforward per-replicate pandas groupby loop measured in the same run on a few
replicates and extrapolated linearly (the output says so).

    python benchmarks/bench_bootstrap.py                 # exits 1 if a target is missed
    python benchmarks/bench_bootstrap.py --report-only   # only report
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
import polars as pl

from biasamp.measure import measure


def make_study(n_occ: int, n_cond: int, n_images: int, n_templates: int, seed: int) -> pl.DataFrame:
    """Group counts: one row per caption (train) and per template (gen)."""
    rng = np.random.default_rng(seed)
    frames = []
    per_template = n_images // n_templates
    for c in range(n_cond):
        p_train = rng.uniform(0.05, 0.95, n_occ)
        occ = np.array([f"occupation {o:03d}" for o in range(n_occ)])
        female = rng.random((n_occ, n_images)) < p_train[:, None]
        frames.append(
            pl.DataFrame(
                {
                    "source": "train",
                    "condition": f"condition-{c}",
                    "occupation": np.repeat(occ, n_images),
                    "group": np.tile(np.array([f"caption {i}" for i in range(n_images)]), n_occ),
                    "n_female": female.ravel().astype(np.int64),
                    "n_male": (~female).ravel().astype(np.int64),
                }
            )
        )
        p_gen = np.clip(p_train + 0.08 * np.sign(p_train - 0.5) + rng.normal(0, 0.03, (n_templates, n_occ)), 0, 1)
        conf = rng.binomial(per_template, 0.95, (n_templates, n_occ))
        fem = rng.binomial(conf, p_gen)
        frames.append(
            pl.DataFrame(
                {
                    "source": "gen",
                    "condition": f"condition-{c}",
                    "occupation": np.tile(occ, n_templates),
                    "group": np.repeat([f"template {t}" for t in range(n_templates)], n_occ),
                    "n_female": fem.ravel().astype(np.int64),
                    "n_male": (conf - fem).ravel().astype(np.int64),
                }
            )
        )
    return pl.concat(frames)


def baseline(groups: pd.DataFrame, n_rep: int, seed: int) -> float:
    """Straightforward pandas: per replicate, resample groups within each occupation and
    side with groupby().sample, redraw images within groups, aggregate with groupby.
    Returns seconds per replicate."""
    rng = np.random.default_rng(seed)
    groups = groups.assign(n=groups.n_female + groups.n_male)
    groups = groups[groups.n > 0]
    keys = ["source", "condition", "occupation"]
    t0 = time.perf_counter()
    for _ in range(n_rep):
        s = groups.groupby(keys, group_keys=False).sample(frac=1.0, replace=True, random_state=rng)
        s = s.assign(f=rng.binomial(s.n.to_numpy(), (s.n_female / s.n).to_numpy()))
        agg = s.groupby(keys)[["f", "n"]].sum()
        p = (agg.f / agg.n).unstack("source")
        amp = 100 * np.sign(p["train"] - 0.5) * (p["gen"] - p["train"])
        amp.groupby(level="condition").mean()
    return (time.perf_counter() - t0) / n_rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--occupations", type=int, default=150)
    ap.add_argument("--conditions", type=int, default=5)
    ap.add_argument("--images", type=int, default=1000, help="images per side and occupation")
    ap.add_argument("--templates", type=int, default=5)
    ap.add_argument("--baseline-reps", type=int, default=3, help="replicates timed for the baseline")
    ap.add_argument("--by-group", action="store_true", help="also time the per-template breakdown")
    ap.add_argument("--target-seconds", type=float, default=5.0)
    ap.add_argument("--target-ratio", type=float, default=20.0)
    ap.add_argument("--report-only", action="store_true", help="never exit non-zero")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="judge the time target on this process's CPU time instead of wall time "
        "(for a machine shared with other work; both are always printed)",
    )
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    df = make_study(a.occupations, a.conditions, a.images, a.templates, a.seed)
    print(
        f"study: {a.occupations} occupations x {a.conditions} conditions, {a.images} images per side "
        f"({len(df):,} group rows: captions of 1 image; {a.templates} templates per occupation)"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")

    measure(df, n_boot=20, by_group=False)  # warm up imports and caches
    c0, t0 = time.process_time(), time.perf_counter()
    res = measure(df, n_boot=a.n_boot, seed=a.seed, by_group=False)
    ours, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.summary["conditions"]["condition-0"]
    print(
        f"biasamp measure, {a.n_boot:,} replicates (occupations + condition means, CIs, tests): "
        f"{ours:.2f} s wall, {ours_cpu:.2f} s CPU (all threads of this process)"
    )
    print(f"  condition-0 mean amp {s['mean_amp']:.2f} [{s['mean_amp_lo']:.2f}, {s['mean_amp_hi']:.2f}] pp")
    if a.by_group:
        c0, t0 = time.process_time(), time.perf_counter()
        measure(df, n_boot=a.n_boot, seed=a.seed, by_group=True)
        print(
            f"  with the per-template breakdown (by_group=True): {time.perf_counter() - t0:.2f} s wall, "
            f"{time.process_time() - c0:.2f} s CPU"
        )

    pdf = df.to_pandas()
    c0 = time.process_time()
    per_rep = baseline(pdf, a.baseline_reps, a.seed)
    per_rep_cpu = (time.process_time() - c0) / a.baseline_reps
    base = per_rep * a.n_boot
    ratio = base / ours
    ratio_cpu = per_rep_cpu * a.n_boot / ours_cpu
    print(
        f"baseline (pandas groupby loop): {per_rep:.3f} s per replicate, timed on {a.baseline_reps} "
        f"replicates and extrapolated to {a.n_boot:,}: {base:.0f} s"
    )
    print(f"speed-up: {ratio:.0f}x wall, {ratio_cpu:.0f}x CPU")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    measured = ours_cpu if a.cpu_time else ours
    ok_time = measured < a.target_seconds
    ok_ratio = ratio >= a.target_ratio
    print(f"target < {a.target_seconds:g} s ({'CPU' if a.cpu_time else 'wall'}): {'met' if ok_time else 'MISSED'}; "
          f"target >= {a.target_ratio:g}x: {'met' if ok_ratio else 'MISSED'}")  # fmt: skip
    if a.report_only:
        return 0
    return 0 if ok_time and ok_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
