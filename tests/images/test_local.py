"""The local source: img2dataset stores (files, parquet) and index files."""

from __future__ import annotations

import polars as pl
import pytest

from biasamp.errors import BiasampError
from biasamp.images import fetch_training_images
from biasamp.images.verify import read_image_bytes


@pytest.fixture
def images():
    from PIL import Image
    import io

    def enc(color, fmt="JPEG", size=(96, 96)):
        b = io.BytesIO()
        Image.new("RGB", size, color).save(b, fmt)
        return b.getvalue()

    return {"red": enc((255, 0, 0)), "blue": enc((0, 0, 255), "PNG"), "tiny": enc((0, 255, 0), size=(10, 10))}


def _sel(make_selection, ids):
    return make_selection([("keyword", "nurse", i, f"http://example.invalid/{i}.jpg") for i in ids])


def _i2d_meta(rows):
    """rows: (key, caption_id, status, error) in img2dataset's shard-table layout."""
    return pl.DataFrame(
        {
            "caption_id": [r[1] for r in rows],
            "url": [f"http://example.invalid/{r[1]}.jpg" for r in rows],
            "key": [r[0] for r in rows],
            "status": [r[2] for r in rows],
            "error_message": [r[3] for r in rows],
            "width": [None] * len(rows),
            "height": [None] * len(rows),
        },
        schema_overrides={"error_message": pl.Utf8, "width": pl.Int32, "height": pl.Int32},
    )


def test_files_store(tmp_path, images, make_selection):
    store = tmp_path / "store"
    (store / "00000").mkdir(parents=True)
    (store / "00000" / "000000000.jpg").write_bytes(images["red"])
    (store / "00000" / "000000000.json").write_text("{}")
    (store / "00000" / "000000001.jpg").write_bytes(images["tiny"])
    rows = [("000000000", 1, "success", None), ("000000001", 2, "success", None), ("000000002", 3, "failed_to_download", "HTTP Error 404: Not Found")]
    _i2d_meta(rows).write_parquet(store / "00000.parquet")
    res = fetch_training_images(_sel(make_selection, [1, 2, 3, 4]), tmp_path / "out", source="local", store=store)
    d = res.downloads
    assert d["status"].to_list() == ["ok", "too_small", "http_error", "missing"]
    assert read_image_bytes(d["image"][0], tmp_path / "out") == images["red"]
    assert res.stats["store_kind"] == "img2dataset" and res.stats["matched_on"] == "caption_id"


def test_parquet_store_is_extracted_into_the_out_folder(tmp_path, images, make_selection):
    store = tmp_path / "pq"
    store.mkdir()
    meta = _i2d_meta([("0", 10, "success", None), ("1", 11, "success", None)]).drop("caption_id")
    meta.with_columns(pl.Series("jpg", [images["blue"], b"garbage"], dtype=pl.Binary)).write_parquet(store / "00000.parquet")
    # no caption id column in this store: matched on url
    res = fetch_training_images(_sel(make_selection, [10, 11]), tmp_path / "out", source="local", store=store)
    d = res.downloads
    assert res.stats["matched_on"] == "url"
    assert d["status"].to_list() == ["ok", "not_an_image"]
    assert not d["image"][0].startswith("/")  # extracted under the out folder
    assert read_image_bytes(d["image"][0], tmp_path / "out") == images["blue"]
    assert d["format"][0] == "PNG"


def test_index_file_store(tmp_path, images, make_selection):
    store = tmp_path / "mine"
    (store / "pics").mkdir(parents=True)
    (store / "pics" / "a.jpg").write_bytes(images["red"])
    (store / "pics" / "b.png").write_bytes(images["blue"])
    pl.DataFrame({"caption_id": [5, 6, 7], "path": ["pics/a.jpg", "pics/b.png", "pics/gone.jpg"]}).write_csv(store / "index.csv")
    res = fetch_training_images(_sel(make_selection, [5, 6, 7, 8]), tmp_path / "out", source="local", store=store)
    assert res.downloads["status"].to_list() == ["ok", "ok", "missing", "missing"]
    assert res.downloads["width"].to_list()[:2] == [96, 96]
    # the same index passed as a file, with a differently named id column
    pl.DataFrame({"cid": [5], "file": [str(store / "pics" / "a.jpg")]}).write_parquet(tmp_path / "idx.parquet")
    r2 = fetch_training_images(_sel(make_selection, [5]), tmp_path / "o2", source="local", store=tmp_path / "idx.parquet", id_column="cid")
    assert r2.downloads["status"].to_list() == ["ok"]


def test_store_errors_name_the_problem(tmp_path, make_selection):
    sel = _sel(make_selection, [1])
    with pytest.raises(BiasampError, match="image store not found"):
        fetch_training_images(sel, tmp_path / "o", source="local", store=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiasampError, match="neither img2dataset output"):
        fetch_training_images(sel, tmp_path / "o", source="local", store=tmp_path / "empty")
    pl.DataFrame({"caption_id": [1], "where": ["x.jpg"]}).write_csv(tmp_path / "i.csv")
    with pytest.raises(BiasampError, match="no image path column"):
        fetch_training_images(sel, tmp_path / "o", source="local", store=tmp_path / "i.csv")
