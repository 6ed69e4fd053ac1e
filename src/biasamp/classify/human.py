"""Human annotations: read CSV/JSONL (`item_id` or `item`, `label`, `annotator`), majority vote.

Annotation labels map onto the labels table: female → female, male → male,
unsure → ambiguous, no_person → no_face, several_people → many_faces. Each annotator
counts once per item (their last row wins); the most frequent label wins and a tie
between the top labels is `ambiguous`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from biasamp.errors import BiasampError

HUMAN_LABELS = {
    "female": "female",
    "male": "male",
    "unsure": "ambiguous",
    "no_person": "no_face",
    "several_people": "many_faces",
}
FACE_STATUS_OF = {"no_face": "no_face", "many_faces": "many_faces"}


def _where(path: str, row: int) -> str:
    """Where data row `row` (0-based, as read) is in the file: the line an editor shows for
    CSV/TSV/JSONL (quoted line breaks and blank lines counted), else the 1-based data row."""
    import csv

    try:
        if path.endswith((".csv", ".tsv")):
            with open(path, newline="", encoding="utf-8-sig") as f:
                r = csv.reader(f, delimiter="\t" if path.endswith(".tsv") else ",")
                next(r)  # the header
                start = r.line_num + 1
                for k, _ in enumerate(r):
                    if k == row:
                        return f"line {start} (data row {row + 1})"
                    start = r.line_num + 1
        elif path.endswith((".jsonl", ".ndjson", ".json")):
            with open(path, encoding="utf-8") as f:
                k = -1
                for n, line in enumerate(f, 1):
                    k += bool(line.strip())  # polars skips blank lines
                    if line.strip() and k == row:
                        return f"line {n} (data row {row + 1})"
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        pass
    return f"data row {row + 1}"


def read_annotations(paths) -> pl.DataFrame:
    """Read one or more annotation files into (item_id, label, annotator), checked.

    `item` is accepted for `item_id` (the column name annotation tools often use); blank
    lines of a CSV are skipped."""
    frames = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        p = str(p)
        if not Path(p).is_file():
            raise BiasampError(f"--annotations: {'not a file' if Path(p).exists() else 'file not found'}: {p}",
                               hint="give annotation files (.csv, .tsv, .jsonl or .parquet with columns item_id or item, "
                               "label, annotator)")
        try:
            if p.endswith((".jsonl", ".ndjson", ".json")):
                df = pl.read_ndjson(p, infer_schema_length=None)
            elif p.endswith((".csv", ".tsv")):
                df = pl.read_csv(p, separator="\t" if p.endswith(".tsv") else ",", infer_schema_length=0)
            elif p.endswith(".parquet"):
                df = pl.read_parquet(p)
            else:
                raise BiasampError(f"annotations file {p}: unknown format", hint="use .csv, .tsv, .jsonl or .parquet")
        except BiasampError:
            raise
        except Exception as e:
            raise BiasampError(f"cannot read annotations file {p}: {type(e).__name__}: {e}") from None
        id_col = "item_id" if "item_id" in df.columns or "item" not in df.columns else "item"
        missing = [c for c in (id_col, "label", "annotator") if c not in df.columns]
        if missing:
            raise BiasampError(
                f"annotations file {p} is missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}",
                hint="annotations need columns item_id (or item), label, annotator",
            )
        df = df.select(
            pl.col(id_col).cast(pl.Utf8).alias("item_id"),
            pl.col("label").cast(pl.Utf8).str.strip_chars().str.to_lowercase(),
            pl.col("annotator").cast(pl.Utf8),
        ).with_row_index("_row")
        df = df.filter(pl.any_horizontal(pl.col("item_id", "label", "annotator").is_not_null()))  # blank lines
        bad = df.filter(pl.col("label").is_null() | ~pl.col("label").is_in(list(HUMAN_LABELS)))
        if len(bad):
            first = bad["label"][0]
            unknown = sorted(set(bad["label"].drop_nulls().to_list()))
            more = f" ({len(bad)} rows; unknown labels: {unknown[:10]})" if len(bad) > 1 else ""
            raise BiasampError(
                f"annotations file {p}, column 'label': {'empty label' if first is None else f'unknown label {first!r}'} "
                f"at {_where(p, bad['_row'][0])}{more}",
                hint=f"allowed labels: {', '.join(HUMAN_LABELS)}",
            )
        if df["item_id"].null_count():
            raise BiasampError(f"annotations file {p}, column {id_col!r}: empty item id at "
                               f"{_where(p, df.filter(pl.col('item_id').is_null())['_row'][0])}")
        frames.append(df.drop("_row").with_columns(pl.col("annotator").fill_null("?")))
    if not frames:
        raise BiasampError("no annotations files given")
    return pl.concat(frames)


def vote(ann: pl.DataFrame) -> pl.DataFrame:
    """Majority vote per item: item_id, label, face_status, p_female, n_annotators, agreement."""
    ann = ann.unique(["item_id", "annotator"], keep="last", maintain_order=True).with_columns(
        pl.col("label").replace_strict(HUMAN_LABELS).alias("mapped")
    )
    counts = ann.group_by("item_id", "mapped").agg(pl.len().alias("n"))
    top = counts.group_by("item_id").agg(
        pl.col("n").max().alias("top"),
        pl.col("mapped").filter(pl.col("n") == pl.col("n").max()).alias("winners"),
        pl.col("n").sum().alias("n_annotators"),
        pl.col("n").filter(pl.col("mapped") == "female").sum().alias("n_female"),
        pl.col("n").filter(pl.col("mapped") == "male").sum().alias("n_male"),
    )
    out = top.with_columns(
        pl.when(pl.col("winners").list.len() == 1).then(pl.col("winners").list.first()).otherwise(pl.lit("ambiguous")).alias("label"),
        (pl.col("top") / pl.col("n_annotators")).alias("agreement"),
        pl.when(pl.col("n_female") + pl.col("n_male") > 0)
        .then(pl.col("n_female") / (pl.col("n_female") + pl.col("n_male")))
        .otherwise(None)
        .cast(pl.Float64)
        .alias("p_female"),
    )
    out = out.with_columns(
        pl.col("label").replace_strict(FACE_STATUS_OF, default="ok").alias("face_status"),
    )
    return out.select("item_id", "label", "face_status", "p_female", "n_annotators", "agreement").sort("item_id")
