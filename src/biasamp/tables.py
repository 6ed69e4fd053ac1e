"""The tables that pass between stages: one documented schema each, validated on read.

A schema lists required and optional columns with their Polars types and, where a column
holds a closed set of values, that set. `validate` coerces types where it safely can and
raises `BiasampError` naming the table, the file, the column and (for bad values) the
first offending rows. docs/tables.md documents the same schemas for users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError

LABELS_CONFIDENT = ("female", "male")
#: Reasons an image is not counted; each is reported as an exclusion, never dropped silently.
EXCLUSION_REASONS = ("ambiguous", "no_face", "many_faces", "small_face", "nsfw", "error", "excluded")
LABELS = LABELS_CONFIDENT + EXCLUSION_REASONS
FACE_STATUS = ("ok", "no_face", "many_faces", "small_face", "nsfw", "error")
SOURCES = ("train", "gen")
INDICATORS = ("male", "female", "both", "none")
CONDITIONS = ("keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators")
#: Condition `biasamp generate` writes on images drawn from templates: one set of images
#: stands for every template-prompted training condition.
TEMPLATE_CONDITION = "templates"
#: The training condition whose captions are used as prompts (and, by default, the
#: condition written on the images drawn from them).
CAPTION_CONDITION = "captions-as-prompts"


def generated_condition_for(train_condition: str, *, template_condition: str = TEMPLATE_CONDITION,
                            caption_condition: str = CAPTION_CONDITION) -> str:
    """The generated images a training condition is compared with, as the study compares
    them: captions used as prompts with the images drawn from those captions; every other
    (template-prompted) condition with the images drawn from templates. The one rule that
    measuring, the study's report and `biasamp similarity` share."""
    return caption_condition if train_condition == CAPTION_CONDITION else template_condition


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType | type[pl.DataType]
    required: bool = True
    values: tuple[str, ...] | None = None  # closed set of allowed values (strings)
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[Column, ...]
    doc: str = ""
    extra: bool = True  # passthrough columns allowed
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema={c.name: c.dtype for c in self.columns})


C = Column
MENTIONS = Schema(
    "mentions",
    (
        C("caption_id", pl.Int64, doc="stable id: LAION hash, else mmh3.hash64(url+text)[0]"),
        C("occupation", pl.Utf8, nullable=False),
        C("text", pl.Utf8),
        C("url", pl.Utf8, required=False),
        C("indicator", pl.Utf8, values=INDICATORS, nullable=False),
        C("indicator_terms", pl.List(pl.Utf8), required=False),
    ),
    doc="one row per (caption, occupation) mentioned",
    key=("caption_id", "occupation"),
)
SELECTION = Schema(
    "selection",
    (
        C("condition", pl.Utf8, nullable=False),
        C("occupation", pl.Utf8, nullable=False),
        C("template", pl.Utf8, required=False),
        C("caption_id", pl.Int64),
        C("text", pl.Utf8),
        C("url", pl.Utf8, required=False),
        C("rank", pl.Int64, required=False),
        C("similarity", pl.Float64, required=False),
    ),
    doc="training captions chosen to stand for an occupation, per condition",
)
GENERATIONS = Schema(
    "generations",
    (
        C("item_id", pl.Utf8, nullable=False),
        C("occupation", pl.Utf8, nullable=False),
        C("condition", pl.Utf8, nullable=False),
        C("group", pl.Utf8, nullable=False),
        C("prompt", pl.Utf8),
        C("seed", pl.Int64),
        C("model", pl.Utf8),
        C("revision", pl.Utf8, required=False),
        C("scheduler", pl.Utf8, required=False),
        C("steps", pl.Int64, required=False),
        C("guidance", pl.Float64, required=False),
        C("width", pl.Int64, required=False),
        C("height", pl.Int64, required=False),
        C("image", pl.Utf8, doc="path (relative to the run directory) or tar member"),
    ),
    doc="one row per generated image, with every parameter needed to regenerate it",
    key=("item_id",),
)
LABELS_TABLE = Schema(
    "labels",
    (
        C("item_id", pl.Utf8, nullable=False),
        C("source", pl.Utf8, values=SOURCES, required=False),
        C("face_status", pl.Utf8, values=FACE_STATUS),
        C("n_faces", pl.Int64, required=False),
        C("p_female", pl.Float64),
        C("label", pl.Utf8, values=LABELS, nullable=False),
        C("backend", pl.Utf8, required=False),
        C("model", pl.Utf8, required=False),
        C("reason", pl.Utf8, required=False),
    ),
    doc="perceived-gender label per image",
    key=("item_id",),
)
OBSERVATIONS = Schema(
    "observations",
    (
        C("source", pl.Utf8, values=SOURCES, nullable=False),
        C("condition", pl.Utf8, nullable=False),
        C("occupation", pl.Utf8, nullable=False),
        C("group", pl.Utf8, required=False),
        C("item_id", pl.Utf8, required=False),
        C("label", pl.Utf8, values=LABELS, nullable=False),
        C("p_female", pl.Float64, required=False),
    ),
    doc="one row per image: what measure consumes",
)
COUNTS = Schema(
    "counts",
    (
        C("source", pl.Utf8, values=SOURCES, nullable=False),
        C("condition", pl.Utf8, nullable=False),
        C("occupation", pl.Utf8, nullable=False),
        C("group", pl.Utf8, required=False),
        C("n_female", pl.Int64, nullable=False),
        C("n_male", pl.Int64, nullable=False),
        C("n_excluded", pl.Int64, required=False),
    ),
    doc="aggregated counts per (source, condition, occupation[, group])",
)

SCHEMAS: dict[str, Schema] = {
    s.name: s for s in (MENTIONS, SELECTION, GENERATIONS, LABELS_TABLE, OBSERVATIONS, COUNTS)
}


def _where(source: str | Path | None) -> str:
    return f" in {source}" if source is not None else ""


def validate(df: pl.DataFrame, schema: Schema | str, *, source: str | Path | None = None) -> pl.DataFrame:
    """Check columns, coerce types, check closed value sets; return the coerced frame.

    Raises BiasampError naming the table, file, column and first bad rows.
    """
    if isinstance(schema, str):
        schema = SCHEMAS[schema]
    missing = [c for c in schema.required if c not in df.columns]
    if missing:
        raise BiasampError(
            f"{schema.name} table{_where(source)} is missing column(s) {', '.join(missing)}; "
            f"columns found: {', '.join(df.columns) or '(none)'}",
            hint=f"a {schema.name} table needs: {', '.join(schema.required)} (see docs/tables.md)",
        )
    casts = []
    for col in schema.columns:
        if col.name not in df.columns:
            continue
        have = df.schema[col.name]
        if have != col.dtype and have != pl.Null:
            try:
                df.select(pl.col(col.name).cast(col.dtype, strict=True))
            except Exception:
                bad = (
                    df.with_row_index("_row", offset=1)
                    .filter(pl.col(col.name).cast(col.dtype, strict=False).is_null() & pl.col(col.name).is_not_null())
                    .head(3)
                )
                rows = ", ".join(f"data row {r} ({v!r})" for r, v in zip(bad["_row"], bad[col.name])) if len(bad) else ""
                raise BiasampError(
                    f"{schema.name} table{_where(source)}: column {col.name!r} should be {col.dtype}, "
                    f"found {have}" + (f"; bad values at {rows}" if rows else ""),
                    hint=f"fix or remove those values in column {col.name!r}",
                ) from None
        casts.append(pl.col(col.name).cast(col.dtype))
    if casts:
        df = df.with_columns(casts)
    for col in schema.columns:
        if col.name not in df.columns:
            continue
        if not col.nullable and df[col.name].null_count():
            first = df.with_row_index("_row", offset=1).filter(pl.col(col.name).is_null())["_row"].head(3).to_list()
            raise BiasampError(
                f"{schema.name} table{_where(source)}: column {col.name!r} has empty values (data rows {first}, counted from 1)",
                hint=f"every row needs a {col.name}",
            )
        if col.values is not None:
            bad = df.with_row_index("_row", offset=1).filter(
                pl.col(col.name).is_not_null() & ~pl.col(col.name).is_in(list(col.values))
            )
            if len(bad):
                vals = sorted(set(bad[col.name].head(20).to_list()))
                raise BiasampError(
                    f"{schema.name} table{_where(source)}: column {col.name!r} has unknown value(s) "
                    f"{vals} (first at data row {bad['_row'][0]}, counted from 1)",
                    hint=f"allowed values: {', '.join(col.values)}",
                )
    return df


def read_table(path: str | Path, schema: Schema | str | None = None, **kwargs) -> pl.DataFrame:
    """Read Parquet (file, folder of parts or glob), CSV/TSV or JSONL and validate it."""
    p = str(path)
    try:
        if p.endswith((".csv", ".tsv")):
            df = pl.read_csv(p, separator="\t" if p.endswith(".tsv") else ",", **kwargs)
        elif p.endswith((".jsonl", ".ndjson")):
            df = pl.read_ndjson(p, **kwargs)
        elif Path(p).is_dir():
            files = sorted(Path(p).rglob("*.parquet"))
            if not files:
                raise BiasampError(f"no .parquet files under folder {p}")
            df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        else:
            df = pl.read_parquet(p, **kwargs)
    except BiasampError:
        raise
    except FileNotFoundError:
        raise BiasampError(f"file not found: {p}") from None
    except Exception as e:  # corrupt or unreadable file: name it
        raise BiasampError(f"cannot read {p}: {type(e).__name__}: {e}",
                           hint="the file is damaged or not in the format its extension says (.parquet, .csv, .tsv, "
                           ".jsonl): write it again, or pass the file you meant") from None
    if schema is not None:
        df = validate(df, schema, source=p)
    return df


def write_table(df: pl.DataFrame, path: str | Path, schema: Schema | str | None = None) -> Path:
    """Validate (optionally) and write Parquet atomically."""
    from biasamp.store import atomic_write_parquet

    if schema is not None:
        df = validate(df, schema, source=path)
    return atomic_write_parquet(df, path)
