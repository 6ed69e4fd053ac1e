"""Export a task's answers: the annotations file, a validation table and agreement figures.

- `annotations.csv` (or `.jsonl`): `item_id, label, annotator, time`, one row per item and
  annotator (their latest answer that was not undone); labels are female, male, unsure,
  no_person, several_people. This is the file the `human` classifier backend reads.
- `labelled.parquet`: the validation table, one row per item whose human majority is female or male:
  `item_id, label` (the classifier's label from the sampled labels table), `reference` (the
  human majority), and `source, occupation, condition, p_female, band, weight, n_answers,
  n_agree` where the task has them. This is what `biasamp validate` and the measurement
  core's error correction read. Items without such a majority are counted in `dropped`.
- `agreement.csv`: Cohen's / Fleiss' kappa (see `agreement.py`).
- `summary.json`: counts, drops by reason, progress per annotator, agreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from biasamp.annotate.agreement import agreement_table
from biasamp.annotate.log import LABEL_VALUES, AnnotationLog
from biasamp.annotate.task import load_task
from biasamp.errors import BiasampError
from biasamp.store import atomic_path, atomic_write_json, atomic_write_parquet

REFERENCE_LABELS = ("female", "male")
DROP_REASONS = ("not_annotated", "tie", "unsure", "no_person", "several_people")


@dataclass
class AnnotationExport:
    """What `export_annotations` produced."""

    annotations: pl.DataFrame
    validation: pl.DataFrame
    agreement: pl.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def majority(labels: list[str]) -> tuple[str | None, int]:
    """The most frequent label and its count; (None, count) when the top is tied."""
    if not labels:
        return None, 0
    ranked = Counter(labels).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, ranked[0][1]
    return ranked[0]


def export_annotations(folder: str | Path, out: str | Path | None = None, *, fmt: str = "csv") -> AnnotationExport:
    """Read a task's answers and write annotations, validation and agreement tables to `out`.

    `out` defaults to `<folder>/export`. It is safe to run while the server is running (it
    reads whole log lines only).
    """
    if fmt not in ("csv", "jsonl"):
        raise BiasampError(f"unknown annotations format {fmt!r}", hint="use csv or jsonl")
    task = load_task(folder)
    if not task.log_path.exists():
        raise BiasampError(
            f"no answers in {task.folder} yet ({task.log_path.name} does not exist)",
            hint="label some images with `biasamp annotate serve` first",
        )
    log = AnnotationLog(task.log_path, task.items["item_id"].to_list(), writable=False)
    answers = log.current_answers()
    if not answers:
        raise BiasampError(f"no answers in {task.log_path} (every answer was undone, or the file is empty)")

    annotations = pl.DataFrame(
        [{"item_id": e["item_id"], "label": e["label"], "annotator": e["annotator"], "time": e["time"]} for e in answers],
        schema={"item_id": pl.Utf8, "label": pl.Utf8, "annotator": pl.Utf8, "time": pl.Utf8},
    ).sort("item_id", "annotator")

    per_item: dict[str, list[str]] = {}
    for e in answers:
        per_item.setdefault(e["item_id"], []).append(e["label"])
    dropped = dict.fromkeys(DROP_REASONS, 0)
    rows = []
    for iid in task.items["item_id"].to_list():
        labs = per_item.get(iid)
        if not labs:
            dropped["not_annotated"] += 1
            continue
        top, count = majority(labs)
        if top is None:
            dropped["tie"] += 1
        elif top not in REFERENCE_LABELS:
            dropped[top] += 1
        else:
            rows.append({"item_id": iid, "reference": top, "n_answers": len(labs), "n_agree": count})
    ref = pl.DataFrame(
        rows, schema={"item_id": pl.Utf8, "reference": pl.Utf8, "n_answers": pl.Int64, "n_agree": pl.Int64}
    )
    keep = [c for c in ("item_id", "label", "backend", "model", "source", "occupation", "condition", "p_female", "band", "weight")
            if c in task.items.columns]
    validation = ref.join(task.items.select(keep), on="item_id", how="left")
    front = ["item_id", "label", "reference"]
    validation = validation.select(front + [c for c in validation.columns if c not in front])

    agreement = agreement_table(annotations)
    progress = log.progress()

    out = Path(out) if out is not None else task.folder / "export"
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    ann_path = out / f"annotations.{fmt}"
    with atomic_path(ann_path) as tmp:
        if fmt == "csv":
            annotations.write_csv(tmp)
        else:
            annotations.write_ndjson(tmp)
    files["annotations"] = ann_path
    files["validation"] = atomic_write_parquet(validation, out / "labelled.parquet")
    with atomic_path(out / "agreement.csv") as tmp:
        agreement.write_csv(tmp)
    files["agreement"] = out / "agreement.csv"
    summary = {
        "task": str(task.folder),
        "n_items": task.n_items,
        "n_answers": len(annotations),
        "labels": list(LABEL_VALUES),
        "answers_by_label": dict(Counter(annotations["label"].to_list())),
        "n_validation": len(validation),
        "dropped": dropped,
        "progress": progress,
        "agreement": agreement.to_dicts(),
        "skipped_log_lines": log.skipped_lines,
    }
    files["summary"] = atomic_write_json(summary, out / "summary.json")
    return AnnotationExport(annotations, validation, agreement, dropped, progress, files)
