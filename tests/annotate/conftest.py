"""Fixtures for the annotation tests: labels tables with real image files, task folders, servers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

OCCUPATIONS = ("nurse", "engineer", "baker")
CONDITIONS = ("keyword", "nearest")


def _png(color: tuple[int, int, int], size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def write_labels(folder: Path, n: int = 60, *, seed: int = 1, tar_share: float = 0.25, prefix: str = "") -> Path:
    """A labels table of `n` images (PNG files and members of a tar shard) under `folder`.

    Each image is a flat colour that encodes its row number, so a test can tell from the
    pixels which item a page shows.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    rows = []
    tar_members = []
    for i in range(n):
        iid = f"{prefix}item-{i:05d}"
        p = float(rng.random())
        label = "female" if p >= 0.9 else "male" if p <= 0.1 else "ambiguous"
        color = (i % 256, (i // 256) % 256, 77)
        data = _png(color)
        if rng.random() < tar_share:
            member = f"{iid}.png"
            tar_members.append((member, data))
            image = f"shard-0000.tar::{member}"
        else:
            (folder / "img" / f"{iid}.png").write_bytes(data)
            image = f"img/{iid}.png"
        rows.append(
            {
                "item_id": iid,
                "source": "train" if i % 2 else "gen",
                "face_status": "ok",
                "n_faces": 1,
                "p_female": p,
                "label": label,
                "backend": "dlib-onnx",
                "model": "test",
                "reason": None,
                "occupation": OCCUPATIONS[i % len(OCCUPATIONS)],
                "condition": CONDITIONS[i % len(CONDITIONS)],
                "image": image,
            }
        )
    if tar_members:
        with tarfile.open(folder / "shard-0000.tar", "w") as tf:
            for name, data in tar_members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    path = folder / "labels.parquet"
    pl.DataFrame(rows, schema_overrides={"reason": pl.Utf8}).write_parquet(path)
    return path


@pytest.fixture
def labels_path(tmp_path) -> Path:
    return write_labels(tmp_path / "run", 60)


@pytest.fixture
def task_dir(tmp_path, labels_path) -> Path:
    from biasamp.annotate import sample_task

    out = tmp_path / "task"
    sample_task(labels_path, out, n=12, seed=3)
    return out


@pytest.fixture
def server(task_dir):
    from biasamp.annotate import serve_task

    srv = serve_task(task_dir, port=0, block=False, announce=None)
    yield srv
    srv.stop()
