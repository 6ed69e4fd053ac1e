"""Coverage of measure's 95% bootstrap intervals over many simulated studies.

    python benchmarks/bench_coverage.py                 # all scenarios; exits 1 if the gated one misses 93–97%
    python benchmarks/bench_coverage.py --report-only   # just print

Scenarios (each: many studies × occupations, every study its own seed, all measured in one
`measure` call; truth planted by `biasamp.simulate`):

- study      (gated): one prompt template as in the study's code, training shares away
                      from 0.5, a planted amplification of 5 ± 2 points.
- templates  (report): three templates with no real difference between them.
- near-half  (report): training shares in 0.4–0.6, where the sign in the study's metric
                      is itself uncertain.

Baseline measured in the same run: the Wald interval (normal approximation for a
difference of two proportions) on the same data; the ratio of mean widths is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=300, help="simulated studies per scenario")
    ap.add_argument("--occupations", type=int, default=20, help="occupations per study")
    ap.add_argument("--n", type=int, default=250, help="images per side per occupation")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", choices=["study", "templates", "near-half", "all"], default="all")
    ap.add_argument("--low", type=float, default=0.93, help="lowest acceptable coverage (gated scenario)")
    ap.add_argument("--high", type=float, default=0.97, help="highest acceptable coverage (gated scenario)")
    ap.add_argument("--report-only", action="store_true", help="print figures, never fail")
    args = ap.parse_args(argv)

    import polars as pl

    from biasamp.simulate.coverage import coverage_study

    pl.Config.set_tbl_width_chars(160)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    scenarios = {
        "study": {},
        "templates": {"templates": ("face", "portrait", "works-as")},
        "near-half": {"share_bands": ((0.4, 0.6),)},
    }
    chosen = list(scenarios) if args.scenario == "all" else [args.scenario]
    failed = False
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for name in chosen:
        t0 = time.perf_counter()
        res = coverage_study(
            n_studies=args.studies, n_occupations=args.occupations, n_train=args.n, n_gen=args.n,
            n_boot=args.n_boot, seed=args.seed, **scenarios[name],
        )  # fmt: skip
        wall = time.perf_counter() - t0
        amp = res.bootstrap["amp"]
        lo, hi = amp.interval
        ratio = amp.mean_width / res.wald.mean_width
        gated = name == "study"
        print(f"\n== scenario {name} ({'gated' if gated else 'report only'}): {res.settings}")
        print(res.table())
        print(
            f"amp coverage {amp.rate:.4f} (95% CI {lo:.4f}–{hi:.4f}) over {amp.total} intervals; "
            f"Wald baseline {res.wald.rate:.4f}; bootstrap/Wald mean width ratio {ratio:.3f}; "
            f"simulate {res.seconds_simulate:.1f} s, measure {res.seconds_measure:.1f} s, total {wall:.1f} s"
        )
        if gated and not (args.low <= amp.rate <= args.high):
            print(f"MISS: amp coverage {amp.rate:.4f} outside [{args.low}, {args.high}]")
            failed = True
        elif gated:
            print(f"OK: amp coverage {amp.rate:.4f} inside [{args.low}, {args.high}]")
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
