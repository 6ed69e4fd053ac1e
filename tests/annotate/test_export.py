"""Export: the annotations file, the validation table, agreement, drops by reason."""

from __future__ import annotations

import json

import polars as pl
import pytest

from biasamp.annotate import AnnotationLog, export_annotations, fleiss_kappa, load_task
from biasamp.annotate.export import majority


def _answer(task_dir, plan: dict[str, list[str | None]]):
    task = load_task(task_dir)
    log = AnnotationLog(task.log_path, task.items["item_id"].to_list())
    for who, labels in plan.items():
        for key, lab in enumerate(labels):
            if lab is not None:
                log.label(who, key, lab)
    log.close()
    return task


def test_majority():
    assert majority(["female", "female", "male"]) == ("female", 2)
    assert majority(["female", "male"]) == (None, 1)
    assert majority([]) == (None, 0)


def test_three_annotators(task_dir, tmp_path):
    # 12 items; the last two are left unlabelled by everyone
    ana = ["female", "female", "male", "male", "unsure", "female", "no_person", "male", "female", "male", None, None]
    bob = ["female", "male", "male", "male", "unsure", "male", "no_person", "several_people", "female", None, None, None]
    cem = ["female", "female", "male", "female", "female", "unsure", "no_person", "male", None, None, None, None]
    task = _answer(task_dir, {"ana": ana, "bob": bob, "cem": cem})
    res = export_annotations(task_dir, tmp_path / "out", fmt="jsonl")
    ann = pl.read_ndjson(tmp_path / "out" / "annotations.jsonl")
    assert ann.columns == ["item_id", "label", "annotator", "time"] and len(ann) == 10 + 9 + 8
    ids = task.items["item_id"].to_list()
    # reference = the most frequent answer when it is female/male and not tied
    want = {ids[0]: "female", ids[1]: "female", ids[2]: "male", ids[3]: "male", ids[7]: "male", ids[8]: "female",
            ids[9]: "male"}
    assert dict(zip(res.validation["item_id"], res.validation["reference"])) == want
    # item 5: female/male/unsure tie; item 4: unsure 2 of 3; item 6: no_person
    assert res.dropped == {"not_annotated": 2, "tie": 1, "unsure": 1, "no_person": 1, "several_people": 0}
    assert len(res.validation) + sum(res.dropped.values()) == task.n_items
    v = res.validation.filter(pl.col("item_id") == ids[1])
    assert v["n_answers"][0] == 3 and v["n_agree"][0] == 2
    assert res.validation.columns[:3] == ["item_id", "label", "reference"]
    assert {"source", "occupation", "p_female", "weight"} <= set(res.validation.columns)
    # agreement: three pairwise Cohen's kappas and Fleiss' kappa over the items with 2+ answers
    stats = res.agreement["statistic"].to_list()
    assert stats.count("cohen_kappa") == 3 and stats[-1] == "fleiss_kappa"
    cats = ["female", "male", "unsure", "no_person", "several_people"]
    counts = []
    for k in range(12):
        answers = [x[k] for x in (ana, bob, cem) if x[k] is not None]
        if len(answers) >= 2:
            counts.append([answers.count(c) for c in cats])
    fl = res.agreement.filter(pl.col("statistic") == "fleiss_kappa")
    assert fl["n_items"][0] == len(counts) == 9
    assert fl["kappa"][0] == pytest.approx(fleiss_kappa(counts))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["progress"] == {"ana": 10, "bob": 9, "cem": 8} and summary["n_validation"] == 7
    assert res.progress == summary["progress"]


def test_undone_answers_are_not_exported(task_dir, tmp_path):
    task = load_task(task_dir)
    log = AnnotationLog(task.log_path, task.items["item_id"].to_list())
    log.label("ana", 0, "female")
    log.label("ana", 1, "male")
    log.undo("ana")
    log.close()
    res = export_annotations(task_dir)
    assert res.annotations["item_id"].to_list() == [task.items["item_id"][0]]
    assert (task_dir / "export" / "annotations.csv").exists() and res.agreement.is_empty()


def test_cli_export_and_its_errors(task_dir, cli_runner, tmp_path):
    from biasamp.cli import app

    res = cli_runner.invoke(app, ["annotate", "export", str(task_dir)])
    assert res.exit_code == 2 and "no answers" in res.output and "annotate serve" in res.output
    res = cli_runner.invoke(app, ["annotate", "export", str(tmp_path)])
    assert res.exit_code == 2 and "not an annotation task folder" in res.output
    _answer(task_dir, {"ana": ["male", "female"], "bob": ["male", "male"]})
    res = cli_runner.invoke(app, ["annotate", "export", str(task_dir), "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    assert "4 answers by 2 annotator(s): ana 2, bob 2" in res.output and "cohen_kappa" in res.output
    assert pl.read_csv(tmp_path / "x" / "annotations.csv").height == 4
