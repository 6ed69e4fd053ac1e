"""The download source against a bounded local server: statuses, timeouts, resume."""

from __future__ import annotations

import time

import polars as pl
import pytest

from biasamp.images import DOWNLOADS, fetch_training_images
from biasamp.images.verify import read_image_bytes
from biasamp.tables import validate

TIMEOUT = 3.0
DEADLINE = 5.0
EXTRA = {  # id -> (url, status) for URLs not served by the test server
    100: ("http://127.0.0.1:1/refused.jpg", "error"),
    101: ("not a url", "error"),
    102: (None, "error"),
}


def _selection(server, ROUTES, selection_frame) -> pl.DataFrame:
    rows = []
    for i, path in enumerate(ROUTES):
        occ = "nurse" if i % 2 else "engineer"
        rows.append(("keyword", occ, i, server.url(path)))
        rows.append(("nearest", occ, i, server.url(path)))  # the same caption under two conditions
    for cid, (url, _) in EXTRA.items():
        rows.append(("keyword", "nurse", cid, url))
    return selection_frame(rows)


@pytest.fixture(scope="module")
def fetched(image_server, tmp_path_factory, routes, make_selection):
    out = tmp_path_factory.mktemp("fetch")
    sel = _selection(image_server, routes, make_selection)
    t0 = time.monotonic()
    res = fetch_training_images(sel, out, source="download", timeout=TIMEOUT, deadline=DEADLINE, threads=32)
    elapsed = time.monotonic() - t0
    return sel, out, res, elapsed, dict(image_server.hits)


def test_each_caption_fetched_once_with_its_status(fetched, image_server, routes):
    ROUTES = routes
    sel, out, res, _, hits = fetched
    d = res.downloads
    validate(d, DOWNLOADS)
    assert d["caption_id"].n_unique() == len(d) == sel["caption_id"].n_unique()
    got = dict(zip(d["caption_id"].to_list(), d["status"].to_list()))
    want = {**dict(enumerate(ROUTES.values())), **{k: v[1] for k, v in EXTRA.items()}}
    assert got == want
    # every served URL requested exactly once although its caption is listed under two conditions
    assert all(hits[p] == 1 for p in ROUTES), hits
    assert (out / "downloads.parquet").exists()
    assert pl.read_parquet(out / "downloads.parquet").equals(d)


def test_failure_reasons_are_recorded(fetched, routes):
    ROUTES = routes
    d = fetched[2].downloads.filter(pl.col("status") != "ok")
    assert d["error_message"].null_count() == 0
    msg = dict(zip(d["caption_id"].to_list(), d["error_message"].to_list()))
    assert "X-Robots-Tag" in msg[list(ROUTES).index("/noai.jpg")]
    assert "404" in msg[list(ROUTES).index("/missing.jpg")]
    assert "longer than" in msg[list(ROUTES).index("/trickle.jpg")]
    assert msg[102] == "no url in the selection"
    received = dict(zip(d["caption_id"].to_list(), d["received"].to_list()))
    assert received[list(ROUTES).index("/corrupt.jpg")] and not received[list(ROUTES).index("/hang.jpg")]


def test_ok_images_are_readable_and_keyed_by_caption(fetched, image_server, routes):
    ROUTES = routes
    _, out, res, _, _ = fetched
    ok = res.downloads.filter(pl.col("status") == "ok")
    assert ok["image"].null_count() == 0 and ok["item_id"].to_list() == [str(c) for c in ok["caption_id"]]
    served = {"/img/a.jpg": image_server.jpeg, "/img/b.png": image_server.png, "/img/c.jpg": image_server.jpeg}
    for cid, ref, w, h, fmt, sha in ok.select("caption_id", "image", "width", "height", "format", "sha256").iter_rows():
        assert "::" in ref and ref.startswith("images/")  # webdataset shard member, relative to out
        data = read_image_bytes(ref, out)
        assert data == served[list(ROUTES)[cid]]  # original bytes kept (no re-encoding)
        assert (w, h, fmt) == ((100, 140, "PNG") if ref and list(ROUTES)[cid].endswith(".png") else (160, 120, "JPEG"))
        import hashlib

        assert sha == hashlib.sha256(data).hexdigest()
    # images of failed captions are not offered to the classifier
    assert res.downloads.filter(pl.col("status") != "ok")["image"].null_count() == len(res.downloads) - len(ok)


def test_hanging_and_slow_servers_do_not_stall_the_run(fetched):
    """/slow answers after 20 s, /hang never (30 s), /trickle sends a byte every 0.4 s (~4 min):
    the download phase still ends soon after the 5 s per-URL deadline."""
    import json

    _, out, _, elapsed, _ = fetched
    stats = json.loads((out / "images" / "batch-0000" / "00000_stats.json").read_text())
    assert stats["duration"] < DEADLINE + 10, stats
    assert elapsed < 120  # whole run, img2dataset's process starts included, on a loaded machine


def test_rerun_after_completion_downloads_nothing(fetched, image_server):
    sel, out, res, _, _ = fetched
    before = image_server.total_hits()
    t0 = time.monotonic()
    again = fetch_training_images(sel, out, source="download", timeout=TIMEOUT, deadline=DEADLINE)
    assert image_server.total_hits() == before
    assert again.stats["attempted"] == 0 and again.stats["new_batches"] == 0
    assert time.monotonic() - t0 < 5  # no img2dataset process started
    assert again.downloads.equals(res.downloads)


@pytest.mark.slow
def test_new_captions_fetched_incrementally_and_a_killed_batch_resumes(fetched, image_server, make_selection, monkeypatch):
    """New captions go into a new batch (files layout here); a run killed before that batch
    finished is resumed by the next run, which downloads each new URL once."""
    from biasamp.images import download

    sel, out, res, _, _ = fetched
    before = image_server.total_hits()
    more = make_selection(
        [("keyword", "engineer", 200, image_server.url("/img/new1.jpg")), ("keyword", "nurse", 201, image_server.url("/img/new2.png"))]
    )
    both = pl.concat([sel, more])
    opts = dict(source="download", timeout=TIMEOUT, deadline=DEADLINE, output_format="files")

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(download, "_run_img2dataset", killed)
        with pytest.raises(KeyboardInterrupt):
            fetch_training_images(both, out, **opts)
    assert image_server.total_hits() == before
    r = fetch_training_images(both, out, **opts)
    assert r.stats["resumed_batches"] == 1 and r.stats["new_batches"] == 0
    assert image_server.total_hits() - before == 2
    assert image_server.hits["/img/new1.jpg"] == 1 and image_server.hits["/img/new2.png"] == 1
    new = r.downloads.filter(pl.col("caption_id") >= 200)
    assert new["status"].to_list() == ["ok", "ok"]
    for ref in new["image"]:
        assert "::" not in ref and (out / ref).is_file()  # files layout: one file per image
    assert r.downloads.filter(pl.col("caption_id") < 200).equals(res.downloads)
    # the downloads table describes the selection it was given, without new requests
    only_old = fetch_training_images(sel, out, **opts)
    assert only_old.downloads.equals(res.downloads)
    assert image_server.total_hits() - before == 2


def test_retry_failed_plans_a_batch_of_the_retryable_failures(fetched, tmp_path, monkeypatch):
    """--retry-failed sends again exactly the captions that failed with timeout/http_error/error."""
    import shutil

    from biasamp.images import download

    sel, out, res, _, _ = fetched
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    planned = []

    def stop(meta, *a, **k):
        planned.append(meta)
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_run_img2dataset", stop)
    with pytest.raises(KeyboardInterrupt):
        fetch_training_images(sel, copy, source="download", retry_failed=True)
    urls = pl.read_parquet(copy / "_fetch" / f"{planned[0]['batch']}.urls.parquet")
    d = res.downloads
    want = d.filter(pl.col("status").is_in(["timeout", "http_error", "error"]) & pl.col("url").is_not_null())
    assert sorted(urls["caption_id"]) == sorted(want["caption_id"])
    assert planned[0]["n"] == len(want)


def test_conflicting_urls_for_one_caption_is_an_error(tmp_path, make_selection):
    selection_frame = make_selection
    from biasamp.errors import BiasampError

    sel = selection_frame([("keyword", "nurse", 1, "http://127.0.0.1:9/a.jpg"), ("nearest", "nurse", 1, "http://127.0.0.1:9/b.jpg")])
    with pytest.raises(BiasampError, match="caption_id 1 appears with different URLs"):
        fetch_training_images(sel, tmp_path, source="download")


def test_unknown_source_names_the_known_ones(tmp_path, make_selection):
    selection_frame = make_selection
    from biasamp.errors import BiasampError

    with pytest.raises(BiasampError, match="known: download, embeddings, local"):
        fetch_training_images(selection_frame([("keyword", "nurse", 1, None)]), tmp_path, source="ftp")


def test_local_source_reads_the_img2dataset_webdataset_output(fetched, tmp_path):
    """A real img2dataset webdataset folder used as a local store gives the same outcome."""
    sel, out, res, _, _ = fetched
    store = out / "images" / "batch-0000"
    loc = fetch_training_images(sel, tmp_path / "local", source="local", store=store)
    want = res.downloads.with_columns(
        pl.when(pl.col("url").is_null()).then(pl.lit("missing")).otherwise(pl.col("status")).alias("status")
    )
    assert loc.downloads["status"].to_list() == want["status"].to_list()
    ok = loc.downloads.filter(pl.col("status") == "ok")
    assert ok["sha256"].to_list() == res.downloads.filter(pl.col("status") == "ok")["sha256"].to_list()
    for ref in ok["image"]:
        assert read_image_bytes(ref, tmp_path / "local")  # absolute tar::member outside the out folder


def test_classify_stage_reads_the_downloads_table(fetched):
    """The downloads table is an image table (item_id + image) for the classification stage."""
    sources = pytest.importorskip("biasamp.classify.sources")
    _, out, res, _, _ = fetched
    shards, _ = sources.discover(out / "downloads.parquet", source="train")
    items = {it.item_id: it for s in shards for it in s.items()}
    assert set(items) == set(res.downloads["item_id"])
    for iid, ref, status in res.downloads.select("item_id", "image", "status").iter_rows():
        if status == "ok":
            data = items[iid].read()
            data = data if isinstance(data, bytes) else open(data, "rb").read()
            assert data == read_image_bytes(ref, out)
        else:
            assert items[iid].error is not None  # reported, not dropped
