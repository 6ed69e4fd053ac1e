"""Reading what `measure` consumes: observations, counts and the Fair Diffusion text format.

Everything is normalised to two frames:

- group counts: `source, condition, occupation, group, n_female, n_male` (confident images
  per cluster), and
- exclusions: `source, condition, occupation, reason, n` (images not counted, by reason).

Nothing is dropped silently: every image that is not `female`/`male` lands in the
exclusions frame under its reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError
from biasamp.tables import EXCLUSION_REASONS, LABELS_CONFIDENT, SOURCES, read_table, validate

#: group name used when the input has no `group` column (every image its own cluster,
#: which for the bootstrap is the same as one binomial draw per occupation and side)
NO_GROUP = "(all)"

FORMATS = ("auto", "observations", "counts", "fair-diffusion")

_FD_COUNTS = re.compile(r"^\s*man:\s*(\d+)\s*,\s*woman:\s*(\d+)\s*,\s*except:\s*(\d+)\s*$", re.IGNORECASE)

GROUP_COUNTS_SCHEMA = {
    "source": pl.Utf8,
    "condition": pl.Utf8,
    "occupation": pl.Utf8,
    "group": pl.Utf8,
    "n_female": pl.Int64,
    "n_male": pl.Int64,
}
EXCLUSIONS_SCHEMA = {
    "source": pl.Utf8,
    "condition": pl.Utf8,
    "occupation": pl.Utf8,
    "reason": pl.Utf8,
    "n": pl.Int64,
}


# --------------------------------------------------------------------------- Fair Diffusion


def parse_fair_diffusion(path: str | Path) -> pl.DataFrame:
    """Parse one Fair Diffusion results file into `occupation, n_male, n_female, n_excluded`.

    The format is two lines per occupation: its name, then `man: M, woman: W, except: E`.
    Blank lines are ignored. A malformed line raises BiasampError naming file and line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BiasampError(f"file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BiasampError(f"cannot read {p}: {type(e).__name__}: {e}") from None
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise BiasampError(f"{p} is empty", hint="a Fair Diffusion file has two lines per occupation")
    rows: dict[str, tuple[int, int, int]] = {}
    i = 0
    while i < len(lines):
        lineno, name = lines[i]
        if _FD_COUNTS.match(name):
            raise BiasampError(
                f"{p}, line {lineno}: expected an occupation name, found counts {name!r}",
                hint="each occupation takes two lines: the name, then 'man: M, woman: W, except: E'",
            )
        if i + 1 >= len(lines):
            raise BiasampError(
                f"{p}, line {lineno}: occupation {name!r} has no counts line after it",
                hint="add 'man: M, woman: W, except: E' after the name",
            )
        clineno, counts = lines[i + 1]
        m = _FD_COUNTS.match(counts)
        if not m:
            raise BiasampError(
                f"{p}, line {clineno}: cannot read counts {counts!r} for occupation {name!r}",
                hint="expected 'man: M, woman: W, except: E' with whole numbers",
            )
        if name in rows:
            raise BiasampError(
                f"{p}, line {lineno}: occupation {name!r} appears twice",
                hint="keep one entry per occupation",
            )
        rows[name] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        i += 2
    return pl.DataFrame(
        {
            "occupation": list(rows),
            "n_male": [v[0] for v in rows.values()],
            "n_female": [v[1] for v in rows.values()],
            "n_excluded": [v[2] for v in rows.values()],
        },
        schema={"occupation": pl.Utf8, "n_male": pl.Int64, "n_female": pl.Int64, "n_excluded": pl.Int64},
    )


def is_fair_diffusion(path: str | Path) -> bool:
    """True if the file looks like the Fair Diffusion format (name line, then counts line)."""
    p = Path(path)
    if p.suffix.lower() in (".parquet", ".csv", ".tsv", ".jsonl", ".ndjson") or p.is_dir():
        return False
    try:
        with open(p, encoding="utf-8") as f:
            head = [ln.strip() for _, ln in zip(range(20), f) if ln.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    return len(head) >= 2 and not _FD_COUNTS.match(head[0]) and bool(_FD_COUNTS.match(head[1]))


def read_fair_diffusion(
    train_path: str | Path, gen_path: str | Path, condition: str = "keyword"
) -> pl.DataFrame:
    """Read a training-side and a generated-side Fair Diffusion file into a `counts` frame.

    `except` counts become `n_excluded` (reason `excluded`). Occupations found on one side
    only are kept: `measure` flags them.
    """
    frames = []
    for source, path in (("train", train_path), ("gen", gen_path)):
        df = parse_fair_diffusion(path)
        frames.append(
            df.with_columns(pl.lit(source).alias("source"), pl.lit(condition).alias("condition")).select(
                "source", "condition", "occupation", "n_female", "n_male", "n_excluded"
            )
        )
    return validate(pl.concat(frames), "counts")


# --------------------------------------------------------------------------- tables


def _to_polars(df) -> pl.DataFrame:
    if isinstance(df, pl.DataFrame):
        return df
    if isinstance(df, pl.LazyFrame):
        return df.collect()
    if type(df).__module__.split(".")[0] == "pandas" and hasattr(df, "columns"):
        return pl.from_pandas(df)
    raise BiasampError(
        f"cannot measure an object of type {type(df).__name__}",
        hint="pass a Polars or pandas DataFrame, or path(s) to Parquet/CSV tables",
    )


def _check_counts_nonnegative(df: pl.DataFrame, where: str) -> None:
    for col in ("n_female", "n_male", "n_excluded"):
        if col in df.columns:
            bad = df.with_row_index("_row", offset=1).filter(pl.col(col) < 0)
            if len(bad):
                raise BiasampError(
                    f"counts table{where}: column {col!r} has negative values (first at data row {bad['_row'][0]}, counted from 1)",
                    hint="counts must be whole numbers >= 0",
                )


def _read_filled(data, *, source: str | None, condition: str | None) -> tuple[pl.DataFrame, str | None]:
    """The table (path, Polars or pandas frame) with `source`/`condition` filled in, and the
    path it came from (None for a frame)."""
    where = None
    if isinstance(data, (str, Path)):
        where = str(data)
        df = read_table(data)
    else:
        df = _to_polars(data)
    return _fill(df, source=source, condition=condition), where


def load_observations(data, *, source: str | None = None, condition: str | None = None) -> pl.DataFrame:
    """Read and validate an observations table (path, Polars or pandas frame).

    `source`/`condition` fill those columns when the table lacks them (e.g. a file that
    holds only generated images).
    """
    df, where = _read_filled(data, source=source, condition=condition)
    return validate(df, "observations", source=where)


def load_counts(data, *, source: str | None = None, condition: str | None = None) -> pl.DataFrame:
    """Read and validate a counts table (path, Polars or pandas frame)."""
    df, where = _read_filled(data, source=source, condition=condition)
    df = validate(df, "counts", source=where)
    _check_counts_nonnegative(df, f" in {where}" if where else "")
    return df


def _fill(df: pl.DataFrame, *, source: str | None, condition: str | None) -> pl.DataFrame:
    if source is not None:
        if source not in SOURCES:
            raise BiasampError(f"unknown source {source!r}", hint="source is 'train' or 'gen'")
        if "source" not in df.columns:
            df = df.with_columns(pl.lit(source).alias("source"))
    if condition is not None and "condition" not in df.columns:
        df = df.with_columns(pl.lit(condition).alias("condition"))
    return df


def detect_kind(df: pl.DataFrame) -> str:
    """'observations' if the table has a label column, 'counts' if it has n_female/n_male."""
    if "label" in df.columns:
        return "observations"
    if "n_female" in df.columns or "n_male" in df.columns:
        return "counts"
    raise BiasampError(
        f"cannot tell what this table is: columns {', '.join(df.columns) or '(none)'}",
        hint="an observations table has a 'label' column (one row per image); a counts table has "
        "'n_female' and 'n_male' (see docs/tables.md)",
    )


def load_any(
    data,
    *,
    fmt: str = "auto",
    source: str | None = None,
    condition: str | None = None,
) -> tuple[str, pl.DataFrame]:
    """Load one input; returns (kind, frame) with kind 'observations' or 'counts'."""
    if fmt not in FORMATS:
        raise BiasampError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    if isinstance(data, (str, Path)):
        path = Path(data)
        if fmt == "fair-diffusion" or (fmt == "auto" and path.is_file() and is_fair_diffusion(path)):
            if source is None:
                raise BiasampError(
                    f"{path} is a Fair Diffusion counts file, which does not say whether it holds "
                    "training or generated images",
                    hint="pass it with --train FILE or --gen FILE (Python: read_fair_diffusion(train, gen))",
                )
            fd = parse_fair_diffusion(path)
            df = fd.with_columns(
                pl.lit(source).alias("source"), pl.lit(condition or "keyword").alias("condition")
            )
            return "counts", load_counts(df)
        if not path.exists() and not any(ch in str(path) for ch in "*?["):
            raise BiasampError(f"file not found: {path}")
        raw, where = read_table(path), str(path)
    else:
        raw, where = _to_polars(data), None
    kind = fmt if fmt in ("observations", "counts") else detect_kind(raw)
    df = validate(_fill(raw, source=source, condition=condition), kind, source=where)
    if kind == "counts":
        _check_counts_nonnegative(df, f" in {where}" if where else "")
    return kind, df


# --------------------------------------------------------------------------- normalising


def _with_group(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with a `group` column, NO_GROUP where it is missing or null."""
    if "group" not in df.columns:
        df = df.with_columns(pl.lit(NO_GROUP).alias("group"))
    return df.with_columns(pl.col("group").fill_null(NO_GROUP))


def observations_to_group_counts(obs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Aggregate observations into (group counts, exclusions)."""
    obs = _with_group(obs)
    keys = ["source", "condition", "occupation", "group"]
    conf = obs.filter(pl.col("label").is_in(list(LABELS_CONFIDENT)))
    groups = (
        obs.select(keys)
        .unique()
        .join(
            conf.group_by(keys).agg(
                (pl.col("label") == "female").sum().cast(pl.Int64).alias("n_female"),
                (pl.col("label") == "male").sum().cast(pl.Int64).alias("n_male"),
            ),
            on=keys,
            how="left",
        )
        .with_columns(pl.col("n_female").fill_null(0), pl.col("n_male").fill_null(0))
        .select(list(GROUP_COUNTS_SCHEMA))
        .cast(GROUP_COUNTS_SCHEMA)
    )
    excl = (
        obs.filter(~pl.col("label").is_in(list(LABELS_CONFIDENT)))
        .group_by(["source", "condition", "occupation", "label"])
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .rename({"label": "reason"})
        .select(list(EXCLUSIONS_SCHEMA))
        .cast(EXCLUSIONS_SCHEMA)
    )
    return groups, excl


def counts_to_group_counts(counts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise a counts table into (group counts, exclusions)."""
    counts = _with_group(counts)
    groups = counts.select(list(GROUP_COUNTS_SCHEMA)).cast(GROUP_COUNTS_SCHEMA)  # summed in normalise_inputs
    if "n_excluded" in counts.columns:
        excl = (
            counts.group_by(["source", "condition", "occupation"], maintain_order=True)
            .agg(pl.col("n_excluded").fill_null(0).sum().alias("n"))
            .with_columns(pl.lit("excluded").alias("reason"))
            .select(list(EXCLUSIONS_SCHEMA))
            .cast(EXCLUSIONS_SCHEMA)
        )
    else:
        excl = pl.DataFrame(schema=EXCLUSIONS_SCHEMA)
    return groups, excl


def normalise_inputs(
    data,
    *,
    fmt: str = "auto",
    condition: str | Sequence[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Turn any accepted input (frame, path, list of paths/frames) into (group counts,
    exclusions, kinds). A string `condition` fills a missing condition column."""
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise BiasampError("nothing to measure: no input given", hint="pass observations or counts")
    fill = condition if isinstance(condition, str) else None
    gframes, eframes, kinds = [], [], []
    for item in items:
        kind, df = load_any(item, fmt=fmt, condition=fill)
        g, e = observations_to_group_counts(df) if kind == "observations" else counts_to_group_counts(df)
        gframes.append(g)
        eframes.append(e)
        kinds.append(kind)
    if kinds == ["observations"]:  # already one row per group
        groups = gframes[0]
    else:  # sum rows of the same group (several inputs, or a counts table with repeats)
        groups = pl.concat(gframes).group_by(["source", "condition", "occupation", "group"]).agg(
            pl.col("n_female").sum(), pl.col("n_male").sum()
        )
    excl = (
        pl.concat(eframes)
        .group_by(["source", "condition", "occupation", "reason"], maintain_order=True)
        .agg(pl.col("n").sum())
        .filter(pl.col("n") > 0)
    )
    unknown = sorted(set(excl["reason"].unique().to_list()) - set(EXCLUSION_REASONS))
    if unknown:  # pragma: no cover - validate() already refuses unknown labels
        raise BiasampError(f"unknown exclusion reason(s) {unknown}", hint=f"allowed: {', '.join(EXCLUSION_REASONS)}")
    return groups, excl, kinds
