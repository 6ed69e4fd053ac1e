"""`measure`: shares, amplification, intervals, tests and categories per condition × occupation."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

import biasamp
from biasamp.errors import BiasampError
from biasamp.measure import metrics as M
from biasamp.measure.bootstrap import (
    SideSampler,
    SideSpec,
    bootstrap_p_value,
    integer_percentile_interval,
    percentile_interval,
    replicate_seeds,
)
from biasamp.measure.correction import Correction
from biasamp.measure.io import NO_GROUP, normalise_inputs
from biasamp.measure.stats import benjamini_hochberg, two_proportion_z_test
from biasamp.tables import EXCLUSION_REASONS

#: uniforms held in memory at once during the bootstrap (bounds memory per chunk and thread)
CHUNK_ELEMENTS = 500_000
#: bootstrap threads when `threads` is not given (at most the machine's CPUs)
DEFAULT_THREADS = 1
SIGNIFICANCE = 0.05
#: decimals kept for interval bounds computed from float32 replicates
FLOAT32_DIGITS_SHARE = 6
FLOAT32_DIGITS_PP = 4

AMPLIFICATION_COLUMNS = [
    "condition", "occupation",
    "n_train", "n_train_female", "n_train_excluded",
    "n_gen", "n_gen_female", "n_gen_excluded",
    "n_train_groups", "n_gen_groups",
    "p_train", "p_train_lo", "p_train_hi",
    "p_gen", "p_gen_lo", "p_gen_hi",
    "amp", "amp_lo", "amp_hi",
    "amp_abs", "amp_abs_lo", "amp_abs_hi",
    "amp_t2a",
    "p_value", "q_value", "p_value_z",
    "category", "flag",
]  # fmt: skip
CORRECTED_COLUMNS = [
    "p_train_corrected", "p_train_corrected_lo", "p_train_corrected_hi",
    "p_gen_corrected", "p_gen_corrected_lo", "p_gen_corrected_hi",
    "amp_corrected", "amp_corrected_lo", "amp_corrected_hi",
]  # fmt: skip
BY_GROUP_COLUMNS = [
    "condition", "group", "occupation",
    "n_train", "n_train_female", "n_gen", "n_gen_female",
    "p_train", "p_train_lo", "p_train_hi",
    "p_gen", "p_gen_lo", "p_gen_hi",
    "amp", "amp_lo", "amp_hi",
    "amp_abs", "amp_abs_lo", "amp_abs_hi",
    "category", "flag",
]  # fmt: skip
BY_GROUP_SCHEMA = {
    "condition": pl.Utf8, "group": pl.Utf8, "occupation": pl.Utf8,
    "n_train": pl.Int64, "n_train_female": pl.Int64, "n_gen": pl.Int64, "n_gen_female": pl.Int64,
    **{c: pl.Float64 for c in BY_GROUP_COLUMNS[7:19]}, "category": pl.Utf8, "flag": pl.Utf8,
}  # fmt: skip
COND_METRICS = ("mean_amp", "mean_amp_abs", "directional_t2a", "zhao_biasamp")


def _num(x) -> float | None:
    """A JSON-safe number: None for missing or non-finite values."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class MeasureResult:
    """What `measure` returns: the tables and the summary (see docs/measure.md)."""

    amplification: pl.DataFrame
    by_group: pl.DataFrame
    exclusions: pl.DataFrame
    summary: dict
    settings: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write amplification.parquet, by_group.parquet, exclusions.parquet and
        summary.json (each atomically) and a manifest into out_dir."""
        from biasamp.store import atomic_write_json, atomic_write_parquet, write_manifest

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [
            atomic_write_parquet(self.amplification, out / "amplification.parquet"),
            atomic_write_parquet(self.by_group, out / "by_group.parquet"),
            atomic_write_parquet(self.exclusions, out / "exclusions.parquet"),
            atomic_write_json(self.summary, out / "summary.json"),
        ]
        paths.append(write_manifest(out, "measure", self.settings))
        return paths

    def conditions_table(self) -> pl.DataFrame:
        rows = []
        for cond, s in self.summary["conditions"].items():
            row = {"condition": cond}
            row.update(s)
            rows.append(row)
        return pl.DataFrame(rows) if rows else pl.DataFrame()

    def print(self, *, max_rows: int = 40) -> None:
        """A readable summary on stdout: one line per condition, then the occupations."""
        from biasamp import ui

        ci = int(round(100 * self.settings.get("ci", 0.95)))

        def interval(v, lo, hi, digits=1):
            if v is None:
                return ""
            if lo is None or hi is None:
                return f"{v:.{digits}f}"
            return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

        rows = []
        for cond, s in self.summary["conditions"].items():
            row = {
                "condition": cond,
                "occupations": f"{s['n_occupations'] - s['n_flagged']}" + (f" (+{s['n_flagged']} flagged)" if s["n_flagged"] else ""),
                f"mean amp [{ci}% CI]": interval(s["mean_amp"], s["mean_amp_lo"], s["mean_amp_hi"], 2),
                "mean |amp|": interval(s["mean_amp_abs"], s["mean_amp_abs_lo"], s["mean_amp_abs_hi"], 2),
                "ampl./refl./mitig.": f"{s['n_amplified']}/{s['n_reflected']}/{s['n_mitigated']}",
                "q<0.05": str(s["n_significant"]),
            }
            if "mean_amp_corrected" in s:
                row["corrected"] = interval(s["mean_amp_corrected"], s["mean_amp_corrected_lo"], s["mean_amp_corrected_hi"], 2)
            rows.append(row)
        if rows:
            ui.print_table(pl.DataFrame(rows), title="Amplification per condition (percentage points)")
        a = self.amplification.sort(["condition", "amp"], descending=[False, True], nulls_last=True)
        occ = pl.DataFrame(
            {
                **({"condition": a["condition"]} if a["condition"].n_unique() > 1 else {}),
                "occupation": a["occupation"],
                "n train/gen": [f"{t}/{g}" for t, g in zip(a["n_train"], a["n_gen"])],
                "p_train→p_gen": [
                    "" if t is None or g is None else f"{t:.2f}→{g:.2f}" for t, g in zip(a["p_train"], a["p_gen"])
                ],
                f"amp [{ci}% CI]": [interval(v, lo, hi) for v, lo, hi in zip(a["amp"], a["amp_lo"], a["amp_hi"])],
                "q": ["" if q is None else f"{q:.3g}" for q in a["q_value"]],
                "category": [c if c is not None else f"flag: {f}" for c, f in zip(a["category"], a["flag"])],
            }
        )
        ui.print_table(occ, title="Per occupation (amp in percentage points)", max_rows=max_rows)
        n_excl = int(self.exclusions["n"].sum()) if len(self.exclusions) else 0
        if n_excl:
            by_reason = self.exclusions.group_by(["source", "reason"]).agg(pl.col("n").sum()).sort(["source", "reason"])
            ui.print_table(by_reason, title=f"Excluded images ({n_excl}), by reason")


def _threads(threads: int | None, n_chunks: int) -> int:
    """Worker threads for the bootstrap: `threads`, else up to DEFAULT_THREADS (capped by
    the CPUs and the number of chunks)."""
    if threads is None:
        threads = min(DEFAULT_THREADS, os.cpu_count() or 1)
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise BiasampError(f"threads must be a whole number >= 1, got {threads!r}")
    return max(1, min(int(threads), n_chunks))


def _validate_params(n_boot, ci, reflected_band, seed) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise BiasampError(f"n_boot must be a whole number >= 1, got {n_boot!r}")
    if not (0.0 < float(ci) < 1.0):
        raise BiasampError(f"ci must be between 0 and 1 (e.g. 0.95), got {ci!r}")
    if not (0.0 <= float(reflected_band) < 1.0):
        raise BiasampError(f"reflected_band must be in [0, 1) (a share, e.g. 0.04), got {reflected_band!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BiasampError(f"seed must be a whole number >= 0, got {seed!r}")


def _side_frame(groups: pl.DataFrame, excl: pl.DataFrame, source: str) -> pl.DataFrame:
    g = (
        groups.filter(pl.col("source") == source)
        .group_by(["condition", "occupation"])
        .agg(
            (pl.col("n_female") + pl.col("n_male")).sum().alias("n"),
            pl.col("n_female").sum().alias("f"),
            ((pl.col("n_female") + pl.col("n_male")) > 0).sum().cast(pl.Int64).alias("groups"),
            pl.lit(True).alias("present"),
        )
    )
    e = excl.filter(pl.col("source") == source)
    wide = (
        e.group_by(["condition", "occupation"]).agg(
            pl.col("n").sum().alias("excluded"),
            *[pl.col("n").filter(pl.col("reason") == r).sum().alias(f"excl_{r}") for r in EXCLUSION_REASONS],
        )
    ).with_columns(pl.lit(True).alias("present_e"))
    out = g.join(wide, on=["condition", "occupation"], how="full", coalesce=True)
    prefix = f"{source}_"
    return out.with_columns(
        (pl.col("present").fill_null(False) | pl.col("present_e").fill_null(False)).alias("present"),
        *[pl.col(c).fill_null(0).cast(pl.Int64) for c in ["n", "f", "groups", "excluded"] + [f"excl_{r}" for r in EXCLUSION_REASONS]],
    ).drop("present_e").rename({c: prefix + c for c in ["n", "f", "groups", "excluded", "present"] + [f"excl_{r}" for r in EXCLUSION_REASONS]})


def _spec(groups: pl.DataFrame, source: str, ok: pl.DataFrame) -> tuple[SideSpec, pl.DataFrame]:
    index = ok.select("condition", "occupation").with_row_index("_unit").with_columns(pl.col("_unit").cast(pl.Int64))
    g = (
        groups.filter((pl.col("source") == source) & ((pl.col("n_female") + pl.col("n_male")) > 0))
        .join(index, on=["condition", "occupation"], how="inner")
        # results depend on the data, not on its row order: groups in order of their names,
        # except in units of one-image groups (pooled into one binomial, order irrelevant)
        .with_columns(
            pl.when((pl.col("n_female") + pl.col("n_male")).max().over("_unit") > 1)
            .then(pl.col("group"))
            .otherwise(pl.lit(""))
            .alias("_order")
        )
        .sort(["_unit", "_order"])
        .drop("_order")
    )
    spec = SideSpec(
        n_units=len(ok),
        unit_of_group=g["_unit"].to_numpy(),
        n=(g["n_female"] + g["n_male"]).to_numpy(),
        f=g["n_female"].to_numpy(),
    )
    return spec, g


def measure(
    data,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    reflected_band: float = 0.04,
    correction: Correction | None = None,
    condition: str | Sequence[str] | None = None,
    format: str = "auto",
    by_group: bool = True,
    progress: bool = False,
    threads: int | None = None,
) -> MeasureResult:
    """Measure amplification per condition × occupation, with bootstrap CIs and tests.

    `data` is an observations or counts table (Polars/pandas frame, a path, or a list of
    them). `condition` restricts to one or more conditions (a string also names the
    condition of a table without a `condition` column). See docs/measure.md.
    """
    _validate_params(n_boot, ci, reflected_band, seed)
    if correction is not None and not isinstance(correction, Correction):
        raise BiasampError("correction must be a biasamp.measure.Correction (from_values / from_validation)")
    groups, excl, kinds = normalise_inputs(data, fmt=format, condition=condition)
    if condition is not None:
        wanted = [condition] if isinstance(condition, str) else list(condition)
        have = sorted(set(groups["condition"].unique().to_list()) | set(excl["condition"].unique().to_list()))
        unknown = [c for c in wanted if c not in have]
        if unknown:
            raise BiasampError(
                f"condition(s) {unknown} not in the data; conditions found: {', '.join(have) or '(none)'}",
                hint="pick a condition that is present",
            )
        groups = groups.filter(pl.col("condition").is_in(wanted))
        excl = excl.filter(pl.col("condition").is_in(wanted))
    if groups.is_empty() and excl.is_empty():
        raise BiasampError("nothing to measure: the input holds no images", hint="check the input files")

    # ---------------------------------------------------------------- per-unit counts, flags
    tr = _side_frame(groups, excl, "train")
    ge = _side_frame(groups, excl, "gen")
    units = (
        tr.join(ge, on=["condition", "occupation"], how="full", coalesce=True)
        .with_columns(
            [pl.col(c).fill_null(0) for c in tr.columns if c not in ("condition", "occupation", "train_present")]
            + [pl.col(c).fill_null(0) for c in ge.columns if c not in ("condition", "occupation", "gen_present")]
            + [pl.col("train_present").fill_null(False), pl.col("gen_present").fill_null(False)]
        )
        .sort(["condition", "occupation"])
    )
    flag = (
        pl.concat_list(
            pl.when(~pl.col("train_present")).then(pl.lit("no training images")),
            pl.when(~pl.col("gen_present")).then(pl.lit("no generated images")),
            pl.when(pl.col("train_present") & (pl.col("train_n") == 0)).then(pl.lit("no confident training images")),
            pl.when(pl.col("gen_present") & (pl.col("gen_n") == 0)).then(pl.lit("no confident generated images")),
        )
        .list.drop_nulls()
        .list.join("; ")
    )
    units = units.with_columns(flag.alias("flag")).with_columns(
        pl.when(pl.col("flag") == "").then(None).otherwise(pl.col("flag")).alias("flag")
    )
    if units.filter(pl.col("flag").is_null()).is_empty():
        reasons = units.group_by("flag").len().sort("len", descending=True)
        raise BiasampError(
            "no occupation can be measured: every one lacks confident training or generated images ("
            + "; ".join(f"{r}: {n}" for r, n in reasons.iter_rows())
            + ")",
            hint="check that both sides are given and that labels include female/male",
        )

    ok = units.filter(pl.col("flag").is_null())
    U = len(ok)
    unit_keys = list(zip(ok["condition"].to_list(), ok["occupation"].to_list()))
    conds = sorted(set(units["condition"].to_list()))
    ok_cond = [c for c, _ in unit_keys]

    ft = ok["train_f"].to_numpy().astype(float)
    nt = ok["train_n"].to_numpy().astype(float)
    fg = ok["gen_f"].to_numpy().astype(float)
    ng = ok["gen_n"].to_numpy().astype(float)
    pt, pg = ft / nt, fg / ng
    # condition membership: sums (S) and means (W) over the unflagged units of a condition
    C = len(conds)
    cond_pos = {c: i for i, c in enumerate(conds)}
    cond_of_unit = np.array([cond_pos[c] for c in ok_cond], dtype=np.int64)
    order = np.argsort(cond_of_unit, kind="stable")
    cuts = np.searchsorted(cond_of_unit[order], np.arange(C + 1))
    cond_units = {c: order[cuts[i] : cuts[i + 1]] for i, c in enumerate(conds)}
    n_in = np.bincount(cond_of_unit, minlength=C).astype(float)
    S_cond = csr_matrix((np.ones(U), (cond_of_unit, np.arange(U))), shape=(C, U))
    W_cond = csr_matrix((1.0 / n_in[cond_of_unit], (cond_of_unit, np.arange(U))), shape=(C, U))
    # replicates keep the observed direction of the training majority (docs/metrics.md)
    dir_amp = M.direction(pt)
    base_t2a = (S_cond @ ft) / np.maximum(S_cond @ nt, 1)
    dir_t2a = np.sign(pt - base_t2a[cond_of_unit])
    dir_corr = M.direction(correction.correct(pt)) if correction is not None else None
    zero_amp = np.flatnonzero(dir_amp == 0)
    zero_t2a = np.flatnonzero(dir_t2a == 0)

    # ---------------------------------------------------------------- samplers
    spec_t, _ = _spec(groups, "train", ok)
    spec_g, gen_groups = _spec(groups, "gen", ok)
    samp_t = SideSampler(spec_t)
    # a table without groups has nothing to break out
    samp_g = SideSampler(spec_g, by_group=by_group, by_group_mask=(gen_groups["group"] != NO_GROUP).to_numpy())
    bg = gen_groups[samp_g.bg_index.tolist()] if by_group else gen_groups.head(0)
    keep_bg = np.ones(len(bg), dtype=bool)
    bg_unit = bg["_unit"].to_numpy() if len(bg) else np.zeros(0, dtype=np.int64)
    bg_n = (bg["n_female"] + bg["n_male"]).to_numpy().astype(float) if len(bg) else np.zeros(0)
    bg_f = bg["n_female"].to_numpy().astype(float) if len(bg) else np.zeros(0)
    bg_keys = list(zip(bg["_unit"].to_list(), bg["group"].to_list())) if len(bg) else []
    cg_keys = sorted({(unit_keys[u][0], g) for (u, g), k in zip(bg_keys, keep_bg) if k})
    cg_index = {k: i for i, k in enumerate(cg_keys)}
    cg_row = np.array([cg_index[(unit_keys[u][0], g)] for (u, g), k in zip(bg_keys, keep_bg) if k], dtype=np.int64)
    cg_col = np.flatnonzero(keep_bg)
    cg_count = np.bincount(cg_row, minlength=len(cg_keys)).astype(float)
    W_cg = csr_matrix(
        (1.0 / cg_count[cg_row] if len(cg_row) else np.zeros(0), (cg_row, cg_col)), shape=(len(cg_keys), len(bg_keys))
    )

    # ---------------------------------------------------------------- bootstrap
    R = int(n_boot)
    K = samp_t.n_uniforms + samp_g.n_uniforms
    chunk = max(1, min(R, CHUNK_ELEMENTS // max(K, 1)))
    seeds = replicate_seeds(int(seed), R)
    P_t = np.empty((U, R), dtype=np.float32)
    P_g = np.empty((U, R), dtype=np.float32)
    F_bg = np.empty((len(bg_keys), R), dtype=np.uint16 if (len(bg_n) == 0 or bg_n.max() < 65535) else np.int32)
    se_r = np.empty(R)
    sp_r = np.empty(R)
    cond_rep = {m: np.full((len(conds), R), np.nan) for m in COND_METRICS}
    if correction is not None:
        cond_rep["mean_amp_corrected"] = np.full((len(conds), R), np.nan)
    cg_rep = np.empty((len(cg_keys), R), dtype=np.float32)
    from biasamp import ui

    def run_chunk(start: int) -> int:
        """Replicates [start, start + chunk): draws and per-replicate statistics, written
        into disjoint slices of the shared arrays (so chunks can run in threads)."""
        stop = min(R, start + chunk)
        Rc = stop - start
        u = np.empty((Rc, K))
        for j, r in enumerate(range(start, stop)):
            rng = np.random.Generator(np.random.PCG64(seeds[r]))
            rng.random(out=u[j])
            if correction is not None:
                se_r[r], sp_r[r] = correction.draw(rng)
        uT = np.ascontiguousarray(u.T)
        del u
        Ft, Nt, _ = samp_t.draw(uT[: samp_t.n_uniforms])
        Fg, Ng, Fgb = samp_g.draw(uT[samp_t.n_uniforms :])
        del uT
        pt_r = Ft / Nt
        pg_r = Fg / Ng
        P_t[:, start:stop] = pt_r
        P_g[:, start:stop] = pg_r
        if Fgb is not None:
            F_bg[:, start:stop] = Fgb
        # with the direction held fixed, amp and the directional terms are the difference
        # scaled by ±100; rows without a direction (share exactly 0.5) use the replicate's
        diff = pg_r - pt_r
        amp_r = diff * (100.0 * dir_amp)[:, None]
        if zero_amp.size:
            amp_r[zero_amp] = M.amplification(pt_r[zero_amp], pg_r[zero_amp])
        cond_rep["mean_amp"][:, start:stop] = W_cond @ amp_r
        # Zhao's BiasAmp equals the study's amplification term by term (docs/metrics.md)
        cond_rep["zhao_biasamp"][:, start:stop] = cond_rep["mean_amp"][:, start:stop]
        cond_rep["mean_amp_abs"][:, start:stop] = W_cond @ M.amplification_abs(pt_r, pg_r)
        t2a_r = diff * (100.0 * dir_t2a)[:, None]
        if zero_t2a.size:
            base = (S_cond @ Ft) / np.maximum(S_cond @ Nt, 1)
            t2a_r[zero_t2a] = M.t2a_terms_from_base(pt_r[zero_t2a], pg_r[zero_t2a], base[cond_of_unit[zero_t2a]])
        cond_rep["directional_t2a"][:, start:stop] = W_cond @ t2a_r
        if correction is not None:
            s1, s2 = se_r[None, start:stop], sp_r[None, start:stop]
            cond_rep["mean_amp_corrected"][:, start:stop] = W_cond @ M.amplification(
                correction.correct(pt_r, s1, s2), correction.correct(pg_r, s1, s2), dir_corr[:, None]
            )
        if len(cg_keys) and Fgb is not None:
            amp_bg = M.amplification(pt_r[bg_unit], Fgb / bg_n[:, None], dir_amp[bg_unit, None])
            cg_rep[:, start:stop] = W_cg @ amp_bg
        return Rc

    starts = list(range(0, R, chunk))
    n_threads = _threads(threads, len(starts))
    with ui.progress("bootstrap", total=R, enabled=progress) as advance:
        if n_threads == 1:
            for start in starts:
                advance(run_chunk(start))
        else:  # numpy releases the GIL in the heavy steps; results do not depend on threads
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_threads) as pool:
                for done in pool.map(run_chunk, starts):
                    advance(done)

    # ---------------------------------------------------------------- per-unit intervals
    lo_hi = {}
    for name in ("p_train", "p_gen", "amp", "amp_abs"):
        lo_hi[name] = (np.empty(U), np.empty(U))
    pval = np.empty(U)
    if correction is not None:
        for name in ("p_train_corrected", "p_gen_corrected", "amp_corrected"):
            lo_hi[name] = (np.empty(U), np.empty(U))
    block = max(1, CHUNK_ELEMENTS // R)
    for s in range(0, U, block):
        e = min(U, s + block)
        a, b = P_t[s:e], P_g[s:e]
        for name, x in (("p_train", a), ("p_gen", b), ("amp_abs", M.amplification_abs(a, b))):
            lo, hi = percentile_interval(x, ci, axis=1)
            lo_hi[name][0][s:e], lo_hi[name][1][s:e] = lo, hi
        diff = b - a
        pval[s:e] = bootstrap_p_value(diff, axis=1)
        # amp = 100 · s · (p_gen − p_train) with s fixed: its interval is that of the
        # difference, scaled (and mirrored where s < 0); s = 0 rows use their replicates
        dlo, dhi = percentile_interval(diff, ci, axis=1)
        sgn = dir_amp[s:e]
        lo_hi["amp"][0][s:e] = np.where(sgn > 0, 100.0 * dlo, -100.0 * dhi)
        lo_hi["amp"][1][s:e] = np.where(sgn > 0, 100.0 * dhi, -100.0 * dlo)
        zero = np.flatnonzero(sgn == 0)
        if zero.size:
            zlo, zhi = percentile_interval(M.amplification(a[zero], b[zero]), ci, axis=1)
            lo_hi["amp"][0][s + zero], lo_hi["amp"][1][s + zero] = zlo, zhi
        if correction is not None:
            ca = correction.correct(a, se_r[None, :], sp_r[None, :])
            cb = correction.correct(b, se_r[None, :], sp_r[None, :])
            cd = M.direction(correction.correct(pt[s:e]))[:, None]
            for name, x in (("p_train_corrected", ca), ("p_gen_corrected", cb), ("amp_corrected", M.amplification(ca, cb, cd))):
                lo, hi = percentile_interval(x, ci, axis=1)
                lo_hi[name][0][s:e], lo_hi[name][1][s:e] = lo, hi

    # replicates are stored as float32: round the bounds to what float32 resolves
    for name, (lo, hi) in lo_hi.items():
        digits = FLOAT32_DIGITS_PP if name.startswith("amp") else FLOAT32_DIGITS_SHARE
        np.round(lo, digits, out=lo)
        np.round(hi, digits, out=hi)

    qval = np.empty(U)
    t2a_terms = np.empty(U)
    for c in conds:
        idx = cond_units[c]
        if idx.size:
            qval[idx] = benjamini_hochberg(pval[idx])
            t2a_terms[idx] = M.directional_t2a_terms(ft[idx], nt[idx], pg[idx])

    amp = M.amplification(pt, pg)
    amp_abs = M.amplification_abs(pt, pg)
    cat = M.category(pt, pg, reflected_band)
    est = {
        "p_train": pt, "p_gen": pg, "amp": amp, "amp_abs": amp_abs, "amp_t2a": t2a_terms,
        "p_value": pval, "q_value": qval, "p_value_z": two_proportion_z_test(ft, nt, fg, ng),
    }  # fmt: skip
    for name, (lo, hi) in lo_hi.items():
        est[f"{name}_lo"], est[f"{name}_hi"] = lo, hi
    if correction is not None:
        ptc, pgc = correction.correct(pt), correction.correct(pg)
        est.update(p_train_corrected=ptc, p_gen_corrected=pgc, amp_corrected=M.amplification(ptc, pgc))
    ok_est = pl.DataFrame(
        {"condition": ok["condition"], "occupation": ok["occupation"], **{k: np.asarray(v, dtype=float) for k, v in est.items()}, "category": list(cat)},
        schema_overrides={"category": pl.Utf8},
    )

    amp_df = units.join(ok_est, on=["condition", "occupation"], how="left").select(
        pl.col("condition"),
        pl.col("occupation"),
        pl.col("train_n").alias("n_train"),
        pl.col("train_f").alias("n_train_female"),
        pl.col("train_excluded").alias("n_train_excluded"),
        pl.col("gen_n").alias("n_gen"),
        pl.col("gen_f").alias("n_gen_female"),
        pl.col("gen_excluded").alias("n_gen_excluded"),
        pl.col("train_groups").alias("n_train_groups"),
        pl.col("gen_groups").alias("n_gen_groups"),
        *[pl.col(c) for c in AMPLIFICATION_COLUMNS[10:-1]],
        pl.col("flag"),
        *[pl.col(f"{s}_excl_{r}").alias(f"n_{s}_excl_{r}") for s in ("train", "gen") for r in EXCLUSION_REASONS],
        *([pl.col(c) for c in CORRECTED_COLUMNS] if correction is not None else []),
    )
    # shares of flagged rows that can be computed from the counts are still shown
    amp_df = amp_df.with_columns(
        pl.when(pl.col("p_train").is_null() & (pl.col("n_train") > 0))
        .then(pl.col("n_train_female") / pl.col("n_train"))
        .otherwise(pl.col("p_train"))
        .alias("p_train"),
        pl.when(pl.col("p_gen").is_null() & (pl.col("n_gen") > 0))
        .then(pl.col("n_gen_female") / pl.col("n_gen"))
        .otherwise(pl.col("p_gen"))
        .alias("p_gen"),
    )

    # ---------------------------------------------------------------- by group
    by_group_df = _by_group_frame(
        units, ok, unit_keys, gen_groups, bg, keep_bg, bg_unit, bg_n, bg_f, F_bg, P_t, pt, ft, nt, lo_hi, ci,
        reflected_band, groups, dir_amp,
    ) if by_group else pl.DataFrame(schema=BY_GROUP_SCHEMA)  # fmt: skip

    # ---------------------------------------------------------------- summary
    settings = {
        "n_boot": R,
        "seed": int(seed),
        "ci": float(ci),
        "reflected_band": float(reflected_band),
        "significance": SIGNIFICANCE,
        "conditions": conds,
        "input_kinds": sorted(set(kinds)),
        "format": format,
        "condition_filter": condition if condition is None or isinstance(condition, str) else list(condition),
        "by_group": bool(by_group),
        "bootstrap": "two-stage cluster bootstrap: groups with replacement within an occupation, then "
        "images within groups (binomial); one SeedSequence child per replicate; percentile intervals",
        "test": "two-sided bootstrap test of p_gen = p_train (percentile-interval inversion), "
        "Benjamini-Hochberg q-values across the occupations of each condition",
        "amplification_unit": "percentage points",
        "correction": correction.to_dict() if correction is not None else None,
        "biasamp": biasamp.__version__,
    }
    summary = {"conditions": {}, "by_group": {}, "settings": settings}
    tallies = {
        row["condition"]: row
        for row in amp_df.group_by("condition")
        .agg(
            pl.len().alias("n_occupations"),
            pl.col("flag").is_not_null().sum().alias("n_flagged"),
            *[(pl.col("category") == k).sum().alias(f"n_{k}") for k in M.CATEGORIES],
            (pl.col("q_value") < SIGNIFICANCE).sum().alias("n_significant"),
        )
        .iter_rows(named=True)
    }
    cond_ci = {name: percentile_interval(rep, ci, axis=1) for name, rep in cond_rep.items()}
    for ci_, c in enumerate(conds):
        idx = cond_units[c]
        t = tallies[c]
        s: dict = {
            k: int(t[k] or 0)
            for k in ("n_occupations", "n_flagged", "n_amplified", "n_reflected", "n_mitigated", "n_significant")
        }
        point = {
            "mean_amp": M.mean_amplification(pt[idx], pg[idx]) if idx.size else None,
            "mean_amp_abs": M.mean_amplification_abs(pt[idx], pg[idx]) if idx.size else None,
            "directional_t2a": M.directional_t2a(ft[idx], nt[idx], pg[idx]) if idx.size else None,
            "zhao_biasamp": M.zhao_biasamp(pt[idx], pg[idx]) if idx.size else None,
        }
        if correction is not None:
            point["mean_amp_corrected"] = (
                M.mean_amplification(correction.correct(pt[idx]), correction.correct(pg[idx])) if idx.size else None
            )
        for name, val in point.items():
            s[name] = _num(val)
            if idx.size:
                s[f"{name}_lo"], s[f"{name}_hi"] = _num(cond_ci[name][0][ci_]), _num(cond_ci[name][1][ci_])
            else:
                s[f"{name}_lo"] = s[f"{name}_hi"] = None
        summary["conditions"][c] = s
    # per (condition, group) means; groups found in one occupation only (captions used as
    # prompts) are not summarised unless the condition has a single occupation
    means = {
        (c, g): (a, b)
        for c, g, a, b in by_group_df.filter(pl.col("flag").is_null())
        .group_by(["condition", "group"])
        .agg(pl.col("amp").mean(), pl.col("amp_abs").mean())
        .iter_rows()
    }
    n_occ_ok = {c: int(cond_units[c].size) for c in conds}
    if len(cg_keys):
        cg_lo, cg_hi = np.round(percentile_interval(cg_rep.astype(float), ci, axis=1), FLOAT32_DIGITS_PP)
    for k, (c, g) in enumerate(cg_keys):
        if cg_count[k] < 2 and n_occ_ok[c] > 1:
            continue
        m_amp, m_abs = means.get((c, g), (None, None))
        summary["by_group"].setdefault(c, {})[g] = {
            "mean_amp": _num(m_amp),
            "mean_amp_lo": _num(cg_lo[k]),
            "mean_amp_hi": _num(cg_hi[k]),
            "n_occupations": int(cg_count[k]),
            "mean_amp_abs": _num(m_abs),
        }
    exclusions = excl.select("source", "condition", "occupation", "reason", "n").sort(
        ["source", "condition", "occupation", "reason"]
    )
    return MeasureResult(amp_df, by_group_df, exclusions, summary, settings)


def _by_group_frame(units, ok, unit_keys, gen_groups, bg, keep_bg, bg_unit, bg_n, bg_f, F_bg, P_t, pt, ft, nt, lo_hi, ci,
                    band, groups, dir_amp) -> pl.DataFrame:  # fmt: skip
    """One row per (condition, generated-side group, occupation)."""
    schema = BY_GROUP_SCHEMA
    sel = np.flatnonzero(keep_bg) if len(bg) else np.zeros(0, dtype=np.int64)
    cols: dict[str, np.ndarray] = {c: np.full(len(sel), np.nan) for c in BY_GROUP_COLUMNS[7:19]}
    if len(sel):
        R = P_t.shape[1]
        step = max(1, CHUNK_ELEMENTS // R)
        for s in range(0, len(sel), step):
            j = sel[s : s + step]
            sl = slice(s, s + len(j))
            # the group's female count has a fixed total: its interval comes from counts
            flo, fhi = integer_percentile_interval(F_bg[j], bg_n[j].astype(np.int64), ci)
            cols["p_gen_lo"][sl], cols["p_gen_hi"][sl] = flo / bg_n[j], fhi / bg_n[j]
            pg_r = F_bg[j].astype(np.float32) / bg_n[j, None].astype(np.float32)
            pt_r = P_t[bg_unit[j]]
            dlo, dhi = percentile_interval(pg_r - pt_r, ci, axis=1)
            sgn = dir_amp[bg_unit[j]]
            cols["amp_lo"][sl] = np.where(sgn > 0, 100.0 * dlo, -100.0 * dhi)
            cols["amp_hi"][sl] = np.where(sgn > 0, 100.0 * dhi, -100.0 * dlo)
            zero = np.flatnonzero(sgn == 0)
            if zero.size:
                zlo, zhi = percentile_interval(M.amplification(pt_r[zero], pg_r[zero]), ci, axis=1)
                cols["amp_lo"][s + zero], cols["amp_hi"][s + zero] = zlo, zhi
            cols["amp_abs_lo"][sl], cols["amp_abs_hi"][sl] = percentile_interval(
                M.amplification_abs(pt_r, pg_r), ci, axis=1
            )
    for c, v in cols.items():
        np.round(v, FLOAT32_DIGITS_PP if c.startswith("amp") else FLOAT32_DIGITS_SHARE, out=v)
    u = bg_unit[sel]
    p_t, p_g = pt[u], bg_f[sel] / bg_n[sel] if len(sel) else np.zeros(0)
    cols.update(
        p_train=p_t,
        p_train_lo=lo_hi["p_train"][0][u],
        p_train_hi=lo_hi["p_train"][1][u],
        p_gen=p_g,
        amp=M.amplification(p_t, p_g, dir_amp[u]),
        amp_abs=M.amplification_abs(p_t, p_g),
    )
    df = pl.DataFrame(
        {
            "condition": ok["condition"].to_numpy()[u] if len(sel) else [],
            "group": bg["group"].to_numpy()[sel] if len(sel) else [],
            "occupation": ok["occupation"].to_numpy()[u] if len(sel) else [],
            "n_train": nt[u].astype(np.int64),
            "n_train_female": ft[u].astype(np.int64),
            "n_gen": bg_n[sel].astype(np.int64),
            "n_gen_female": bg_f[sel].astype(np.int64),
            **{c: np.asarray(v, dtype=float) for c, v in cols.items()},
            "category": list(M.category(p_t, p_g, band)),
            "flag": [None] * len(sel),
        },
        schema=schema,
    ).select(BY_GROUP_COLUMNS)
    # generated-side groups that could not be measured: flagged rows, never dropped
    gen_all = groups.filter((pl.col("source") == "gen") & (pl.col("group") != NO_GROUP)).join(
        units.select("condition", "occupation", "flag", "train_n", "train_f"), on=["condition", "occupation"], how="left"
    )
    measured = df.select("condition", "group", "occupation")
    missing = gen_all.join(measured, on=["condition", "group", "occupation"], how="anti")
    # units whose groups each hold one image are not broken out by group
    singleton_units = (
        groups.filter(pl.col("source") == "gen")
        .group_by(["condition", "occupation"])
        .agg(((pl.col("n_female") + pl.col("n_male")).max() <= 1).alias("_single"), pl.len().alias("_g"))
        .filter(pl.col("_single") & (pl.col("_g") > 1))
    )
    missing = missing.join(singleton_units.select("condition", "occupation"), on=["condition", "occupation"], how="anti")
    if len(missing):
        extra = missing.select(
            "condition",
            "group",
            "occupation",
            pl.col("train_n").alias("n_train"),
            pl.col("train_f").alias("n_train_female"),
            (pl.col("n_female") + pl.col("n_male")).alias("n_gen"),
            pl.col("n_female").alias("n_gen_female"),
            pl.coalesce(pl.col("flag"), pl.lit("no confident generated images in group")).alias("flag"),
        )
        df = pl.concat([df, extra], how="diagonal_relaxed").select(BY_GROUP_COLUMNS)
    return df.sort(["condition", "group", "occupation"])
