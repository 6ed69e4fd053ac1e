"""The append-only answer log: replay, undo as retraction, crash-cut lines, idempotent retries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biasamp.annotate import LABEL_VALUES, AnnotationLog

IDS = [f"id{i}" for i in range(6)]


def test_answers_undo_and_replay(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AnnotationLog(path, IDS)
    log.label("ana", 0, "female")
    log.label("ana", 1, "male")
    size = path.stat().st_size
    before = path.read_bytes()
    target = log.undo("ana")
    assert target["key"] == 1 and target["label"] == "male"
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > size  # undo appends, never edits
    last = json.loads(after.splitlines()[-1])
    assert last["event"] == "undo" and last["undoes"] == target["seq"]
    assert log.state("ana")["next"] == 1 and log.state("ana")["done"] == 1
    log.close()
    again = AnnotationLog(path, IDS)
    assert again.state("ana") == log.state("ana")
    assert [(e["item_id"], e["label"]) for e in again.current_answers()] == [("id0", "female")]


def test_reanswer_supersedes_and_undo_reverts(tmp_path):
    log = AnnotationLog(tmp_path / "a.jsonl", IDS)
    log.label("ana", 0, "female")
    log.label("ana", 0, "male")
    assert [e["label"] for e in log.current_answers()] == ["male"]
    log.undo("ana")
    assert [e["label"] for e in log.current_answers()] == ["female"]
    # a repeated submission of the latest answer is not written twice
    n = len((tmp_path / "a.jsonl").read_bytes().splitlines())
    log.label("ana", 0, "female")
    assert len((tmp_path / "a.jsonl").read_bytes().splitlines()) == n


def test_annotators_are_kept_apart(tmp_path):
    log = AnnotationLog(tmp_path / "a.jsonl", IDS)
    log.label("ana", 0, "female")
    log.label("bob", 0, "male")
    log.label("bob", 1, "male")
    assert log.progress() == {"ana": 1, "bob": 2}
    assert log.undo("ana")["label"] == "female"
    assert log.undo("ana") is None  # nothing left to undo for ana; bob untouched
    assert log.progress() == {"ana": 0, "bob": 2}


def test_a_line_cut_by_a_crash_is_skipped_and_the_next_append_is_clean(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AnnotationLog(path, IDS)
    log.label("ana", 0, "female")
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"event":"label","seq":1,"annotator":"ana","ke')  # killed mid-write
    log = AnnotationLog(path, IDS)
    assert log.skipped_lines == [2] and log.state("ana")["done"] == 1
    log.label("ana", 1, "male")
    log.close()
    log = AnnotationLog(path, IDS)
    assert log.skipped_lines == [2] and log.progress() == {"ana": 2}


def test_bad_values_refused(tmp_path):
    log = AnnotationLog(tmp_path / "a.jsonl", IDS)
    for args in [("ana", 9, "male"), ("ana", True, "male"), ("ana", 0, "woman"), ("", 0, "male"), ("a/b", 0, "male")]:
        with pytest.raises(ValueError):
            log.label(*args)
    assert not (tmp_path / "a.jsonl").read_bytes()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("label"), st.sampled_from(["ana", "bob"]), st.integers(0, 5), st.sampled_from(LABEL_VALUES)),
        st.tuples(st.just("undo"), st.sampled_from(["ana", "bob"])),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_replay_equals_a_reference_model(tmp_path_factory, seq):
    """Whatever the sequence of answers and undos, the log on disk replays to the same state
    as a plain reference model: per annotator, a stack of answers; an item's answer is the
    latest one still on the stack."""
    path = tmp_path_factory.mktemp("log") / "a.jsonl"
    log = AnnotationLog(path, IDS)
    stacks: dict[str, list[tuple[int, str]]] = {"ana": [], "bob": []}
    for op in seq:
        if op[0] == "label":
            _, who, key, lab = op
            log.label(who, key, lab)
            if not (stacks[who] and stacks[who][-1] == (key, lab)):
                stacks[who].append((key, lab))
        else:
            log.undo(op[1])
            if stacks[op[1]]:
                stacks[op[1]].pop()
    log.close()
    replay = AnnotationLog(path, IDS, writable=False)
    got = {(e["annotator"], e["key"]): e["label"] for e in replay.current_answers()}
    want = {}
    for who, stack in stacks.items():
        for key, lab in stack:
            want[(who, key)] = lab
    assert got == want
    for who, stack in stacks.items():
        answered = {k for k, _ in stack}
        first_open = next((k for k in range(6) if k not in answered), None)
        assert replay.state(who)["next"] == first_open
        assert replay.state(who)["done"] == len(answered)


def test_foreign_lines_are_skipped_and_reported(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [
        {"event": "label", "seq": 0, "annotator": "ana", "key": 0, "item_id": "id0", "label": "male", "time": "t"},
        {"event": "label", "seq": 1, "annotator": "ana", "key": 7, "item_id": "id7", "label": "male", "time": "t"},
        {"event": "label", "seq": 2, "annotator": "ana", "key": 1, "item_id": "id9", "label": "male", "time": "t"},
        {"event": "label", "seq": 3, "annotator": "bob", "key": 1, "item_id": "id1", "label": "cat", "time": "t"},
        {"event": "undo", "seq": 4, "annotator": "bob", "undoes": 0, "key": 0, "time": "t"},
        {"event": "label", "seq": 0, "annotator": "bob", "key": 2, "item_id": "id2", "label": "male", "time": "t"},
        {"event": "rename", "seq": 5, "annotator": "bob"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    log = AnnotationLog(path, IDS)
    assert log.skipped_lines == [2, 3, 4, 5, 6, 7, 8]
    assert log.progress() == {"ana": 1}  # no trace of the refused lines
    assert log.label("ana", 1, "female")["seq"] == 6  # numbered after every event number seen
