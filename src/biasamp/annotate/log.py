"""The append-only annotation log: every answer is one JSON line, written and fsynced as given.

An undo is a retraction event appended to the log, never an edit, so the file only grows
and a killed server loses nothing. Replaying the log gives the current answers; the server
keeps that replay in memory (per annotator: the live answers, an undo stack and a cursor on
the first unanswered item), so each request costs O(1) whatever the task size.

Event lines::

    {"event": "label", "seq": 7, "annotator": "ana", "key": 12, "item_id": "x", "label": "male", "time": "..."}
    {"event": "undo", "seq": 8, "annotator": "ana", "undoes": 7, "key": 12, "time": "..."}
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path

from biasamp.errors import BiasampError

#: The annotation label set (value, button text, default key). It is the contract of the
#: exported annotations file, so it is fixed; texts and keys are copied into task.json.
ANNOTATION_LABELS: tuple[tuple[str, str, str], ...] = (
    ("female", "Female", "f"),
    ("male", "Male", "m"),
    ("unsure", "Unsure", "u"),
    ("no_person", "No person", "n"),
    ("several_people", "Several people", "s"),
)
LABEL_VALUES: tuple[str, ...] = tuple(v for v, _, _ in ANNOTATION_LABELS)

ANNOTATOR_MAX_LEN = 64


def check_annotator(name: object) -> str:
    """Return the cleaned annotator name or raise ValueError saying what is wrong."""
    if not isinstance(name, str):
        raise ValueError("annotator must be a string")
    name = name.strip()
    if not name:
        raise ValueError("annotator name is empty")
    if len(name) > ANNOTATOR_MAX_LEN:
        raise ValueError(f"annotator name is longer than {ANNOTATOR_MAX_LEN} characters")
    if any(not (c.isalnum() or c in " ._-@") for c in name):
        raise ValueError("annotator name may hold letters, digits, spaces and . _ - @ only")
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Annotator:
    """One annotator's replayed state."""

    n_items: int
    # key -> live label events for that key, oldest first (a re-answer supersedes; undo reverts)
    live: dict[int, list[dict]] = field(default_factory=dict)
    stack: list[dict] = field(default_factory=list)  # live label events in the order given
    cursor: int = 0  # every key below cursor is answered

    def current(self, key: int) -> dict | None:
        events = self.live.get(key)
        return events[-1] if events else None

    def add(self, ev: dict) -> None:
        self.live.setdefault(ev["key"], []).append(ev)
        self.stack.append(ev)
        self._advance()

    def retract(self, ev: dict) -> None:
        events = self.live[ev["key"]]
        del events[next(i for i, e in enumerate(events) if e is ev)]
        if not events:
            del self.live[ev["key"]]
            self.cursor = min(self.cursor, ev["key"])

    def _advance(self) -> None:
        while self.cursor < self.n_items and self.cursor in self.live:
            self.cursor += 1

    def next_key(self) -> int | None:
        self._advance()
        return self.cursor if self.cursor < self.n_items else None

    def following_key(self, key: int) -> int | None:
        """The first unanswered key after `key` (bounded look-ahead, for prefetching)."""
        for k in range(key + 1, min(self.n_items, key + 64)):
            if k not in self.live:
                return k
        return None

    @property
    def done(self) -> int:
        return len(self.live)


class AnnotationLog:
    """Replay of an append-only JSONL annotation log, with appends that are fsynced.

    `item_ids[key]` maps the task's item keys (0..n-1) to item ids. Thread-safe.
    """

    def __init__(self, path: str | Path, item_ids: list[str], *, writable: bool = True):
        self.path = Path(path)
        self.item_ids = list(item_ids)
        self.n_items = len(self.item_ids)
        self.annotators: dict[str, _Annotator] = {}
        self.events: dict[int, dict] = {}
        self.seq = 0
        self.skipped_lines: list[int] = []
        self._lock = threading.Lock()
        self._fh = None
        self._replay()
        if writable:
            self._open_for_append()

    # ---------------------------------------------------------------- replay
    def _replay(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            data = f.read()
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
                if isinstance(ev, dict) and isinstance(ev.get("seq"), int):
                    # new events are numbered after every number seen, refused lines included
                    self.seq = max(self.seq, ev["seq"] + 1)
                self._apply(ev)
            except (ValueError, KeyError, TypeError):
                # a line cut by a crash mid-write, or edited by hand: reported, not fatal
                self.skipped_lines.append(lineno)

    def _apply(self, ev: dict) -> None:
        kind = ev["event"]
        seq = int(ev["seq"])
        name = check_annotator(ev["annotator"])
        if seq in self.events:
            raise ValueError(f"event number {seq} appears twice")
        if kind == "label":
            key = int(ev["key"])
            if not 0 <= key < self.n_items or ev["label"] not in LABEL_VALUES:
                raise ValueError("label event outside the task")
            if ev.get("item_id") is not None and ev["item_id"] != self.item_ids[key]:
                raise ValueError("label event for an item id that does not match its key")
            ev = {**ev, "key": key, "seq": seq, "annotator": name}
            self._annotator(name).add(ev)
        elif kind == "undo":
            target = self.events.get(int(ev["undoes"]))
            if target is None or target["event"] != "label" or target["annotator"] != name:
                raise ValueError("undo of an unknown event or of another annotator's answer")
            ann = self._annotator(name)
            if ann.stack and ann.stack[-1] is target:
                ann.stack.pop()
            else:  # not the latest answer (a hand-made log): find it by identity
                at = next((i for i, e in enumerate(ann.stack) if e is target), None)
                if at is None:
                    raise ValueError("undo of an event already undone or by another annotator")
                del ann.stack[at]
            ann.retract(target)
        else:
            raise ValueError(f"unknown event {kind!r}")
        self.events[seq] = ev
        self.seq = max(self.seq, seq + 1)

    def _annotator(self, name: str) -> _Annotator:
        ann = self.annotators.get(name)
        if ann is None:
            ann = self.annotators[name] = _Annotator(self.n_items)
        return ann

    # ---------------------------------------------------------------- appends
    def _open_for_append(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fh = os.fdopen(fd, "ab", buffering=0)
        size = os.fstat(fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a crash cut the last line: start a fresh one
                    self._write(b"\n")

    def _write(self, data: bytes) -> None:
        if self._fh is None:
            raise BiasampError(f"annotation log {self.path} is open read-only")
        self._fh.write(data)
        os.fsync(self._fh.fileno())

    def _append(self, ev: dict) -> dict:
        line = json.dumps(ev, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        self._write(line)  # on disk before it counts in memory
        self._apply(ev)
        return self.events[ev["seq"]]

    def label(self, annotator: str, key: int, label: str) -> dict:
        """Record an answer (idempotent when it repeats the annotator's latest answer)."""
        annotator = check_annotator(annotator)
        if label not in LABEL_VALUES:
            raise ValueError(f"label {label!r} is not one of {', '.join(LABEL_VALUES)}")
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < self.n_items:
            raise ValueError(f"key must be an integer from 0 to {self.n_items - 1}")
        with self._lock:
            ann = self._annotator(annotator)
            if ann.stack and ann.stack[-1]["key"] == key and ann.stack[-1]["label"] == label:
                return ann.stack[-1]  # a repeated submission (retry, double click)
            ev = {
                "event": "label",
                "seq": self.seq,
                "annotator": annotator,
                "key": key,
                "item_id": self.item_ids[key],
                "label": label,
                "time": _now(),
            }
            return self._append(ev)

    def undo(self, annotator: str) -> dict | None:
        """Retract the annotator's latest live answer; None when there is nothing to undo."""
        annotator = check_annotator(annotator)
        with self._lock:
            ann = self._annotator(annotator)
            if not ann.stack:
                return None
            target = ann.stack[-1]
            ev = {
                "event": "undo",
                "seq": self.seq,
                "annotator": annotator,
                "undoes": target["seq"],
                "key": target["key"],
                "time": _now(),
            }
            self._append(ev)
            return target

    def close(self) -> None:
        with self._lock:  # an append in progress finishes first
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    # ---------------------------------------------------------------- queries
    def state(self, annotator: str) -> dict:
        """Progress, next key, a prefetch key and whether undo is possible for one annotator."""
        annotator = check_annotator(annotator)
        with self._lock:
            ann = self.annotators.get(annotator) or _Annotator(self.n_items)
            nxt = ann.next_key()
            return {
                "annotator": annotator,
                "done": ann.done,
                "total": self.n_items,
                "next": nxt,
                "prefetch": ann.following_key(nxt) if nxt is not None else None,
                "can_undo": bool(ann.stack),
                "last": ann.stack[-1]["label"] if ann.stack else None,
            }

    def progress(self) -> dict[str, int]:
        with self._lock:
            return {name: a.done for name, a in sorted(self.annotators.items())}

    def current_answers(self) -> list[dict]:
        """The live answer of every (annotator, item): one dict per pair, in log order."""
        with self._lock:
            out = [a.current(k) for a in self.annotators.values() for k in a.live]
        return sorted((e for e in out if e is not None), key=lambda e: e["seq"])
