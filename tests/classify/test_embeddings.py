"""Reading saved image embeddings back: gathered per file, damaged or mixed files refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from biasamp.classify.embeddings import load_embeddings
from biasamp.errors import BiasampError


def _files(tmp_path, arrays: dict[str, np.ndarray]):
    (tmp_path / "embeddings").mkdir()
    for name, arr in arrays.items():
        np.save(tmp_path / "embeddings" / name, arr)


def test_rows_are_gathered_from_their_files_in_table_order(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)
    _files(tmp_path, {"a.npy": a, "b.npy": b})
    df = pl.DataFrame({"embedding_file": ["embeddings/b.npy", None, "embeddings/a.npy", "embeddings/a.npy", "embeddings/b.npy"],
                       "embedding_row": [1, None, 2, 0, 0]})
    got = load_embeddings(df, tmp_path)
    expected = np.stack([b[1], np.full(4, np.nan, np.float32), a[2], a[0], b[0]])  # an independent row-by-row reading
    np.testing.assert_array_equal(got, expected)


def test_mixed_dimensions_missing_files_and_bad_rows_are_refused(tmp_path):
    _files(tmp_path, {"a.npy": np.zeros((2, 4), np.float32), "b.npy": np.zeros((2, 8), np.float32), "c.npy": np.zeros(3)})
    with pytest.raises(BiasampError, match=r"differ in dimension: .*a\.npy holds 4, .*b\.npy holds 8"):
        load_embeddings(pl.DataFrame({"embedding_file": ["embeddings/a.npy", "embeddings/b.npy"], "embedding_row": [0, 0]}), tmp_path)
    with pytest.raises(BiasampError, match=r"a\.npy has 2 rows, but the labels table points at row 5"):
        load_embeddings(pl.DataFrame({"embedding_file": ["embeddings/a.npy"], "embedding_row": [5]}), tmp_path)
    with pytest.raises(BiasampError, match=r"c\.npy holds an array of shape \(3,\)"):
        load_embeddings(pl.DataFrame({"embedding_file": ["embeddings/c.npy"], "embedding_row": [0]}), tmp_path)
    with pytest.raises(BiasampError, match="is missing"):
        load_embeddings(pl.DataFrame({"embedding_file": ["embeddings/z.npy"], "embedding_row": [0]}), tmp_path)
    with pytest.raises(BiasampError, match="no row of the labels table has an embedding"):
        load_embeddings(pl.DataFrame({"embedding_file": [None], "embedding_row": [None]}, schema={"embedding_file": pl.Utf8, "embedding_row": pl.Int64}), tmp_path)
