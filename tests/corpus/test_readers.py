"""Every corpus schema and format the query reads, built here from scratch."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import fsspec
import mmh3
import polars as pl
import pytest

from biasamp.corpus import query_corpus, read_mentions, resolve_inputs
from biasamp.corpus.readers import CorpusFile, csv_layout
from biasamp.errors import BiasampError

CAPS = ["A nurse with her patient", "red sofa for sale", "Engineer and his team", None, ""]
URLS = [f"https://img.example.com/{i}.jpg" for i in range(len(CAPS))]


def q(tmp_path, corpus, **kw):
    kw.setdefault("names", None)
    return query_corpus(corpus, tmp_path / "out", progress=False, **kw)


def check(res, *, ids="url+text"):
    m = res.mentions().sort("occupation")
    assert m["occupation"].to_list() == ["engineer", "nurse"]
    assert m["indicator"].to_list() == ["male", "female"]
    assert m["text"].to_list() == [CAPS[2], CAPS[0]]
    assert set(m["id_rule"]) == {ids}
    if ids == "url+text":
        assert m["caption_id"].to_list() == [mmh3.hash64(URLS[2] + CAPS[2])[0], mmh3.hash64(URLS[0] + CAPS[0])[0]]
    f = res.files.row(0, named=True)
    assert f["status"] == "ok" and f["rows"] == 5 and f["null_text"] == 1 and f["empty_text"] == 1
    return m


@pytest.mark.parametrize(
    "columns",
    [
        # LAION-400M
        {"SAMPLE_ID": list(range(5)), "URL": URLS, "TEXT": CAPS, "HEIGHT": [1] * 5, "WIDTH": [1] * 5, "LICENSE": ["?"] * 5, "NSFW": ["UNLIKELY"] * 5, "similarity": [0.3] * 5},
        # LAION-2B-en
        {"SAMPLE_ID": list(range(5)), "URL": URLS, "TEXT": CAPS, "HEIGHT": [1] * 5, "WIDTH": [1] * 5, "LICENSE": ["?"] * 5, "NSFW": ["UNLIKELY"] * 5, "similarity": [0.3] * 5},
        # Re-LAION / img2dataset shard table
        {"url": URLS, "caption": CAPS, "key": [f"{i:09d}" for i in range(5)], "status": ["success"] * 5, "error_message": [None] * 5},
        # embeddings metadata
        {"url": URLS, "caption": CAPS},
    ],
    ids=["laion400m", "laion2b-en", "re-laion", "embeddings-meta"],
)
def test_parquet_schemas(tmp_path, columns):
    pl.DataFrame(columns).write_parquet(tmp_path / "part-0.parquet")
    check(q(tmp_path, [str(tmp_path / "part-0.parquet")]))


def test_joined_release_uses_hash(tmp_path):
    hashes = [11, 22, 33, 44, 55]
    pl.DataFrame({"URL": URLS, "TEXT": CAPS, "hash": hashes, "punsafe": [0.1] * 5, "pwatermark": [0.2] * 5}).write_parquet(tmp_path / "j.parquet")
    m = check(q(tmp_path, [str(tmp_path / "j.parquet")], keep=["punsafe"]), ids="hash")
    assert m["caption_id"].to_list() == [33, 11]
    assert m["punsafe"].to_list() == [0.1, 0.1]


def test_no_url_uses_fallback_id(tmp_path):
    pl.DataFrame({"caption": CAPS}).write_parquet(tmp_path / "c.parquet")
    res = q(tmp_path, [str(tmp_path / "c.parquet")])
    m = res.mentions().sort("row")
    assert m["id_rule"].to_list() == ["fallback", "fallback"]
    assert m["caption_id"].to_list()[0] == mmh3.hash64(f"{CAPS[0]}\x1fc.parquet\x1f0")[0]


def test_csv_with_header(tmp_path):
    pl.DataFrame({"Caption": CAPS, "Url": URLS}).write_csv(tmp_path / "c.csv")
    check(q(tmp_path, [str(tmp_path / "c.csv")]))


def _tsv_rows():
    return [(c if c is not None else "", u) for c, u in zip(CAPS, URLS)]


def test_tsv_headerless_cc3m(tmp_path):
    # CC3M: caption<TAB>url, no header. (A null caption cannot be written: it reads as empty.)
    (tmp_path / "train.tsv").write_text("".join(f"{c}\t{u}\n" for c, u in _tsv_rows()), encoding="utf-8")
    assert csv_layout(str(tmp_path / "train.tsv"))["columns"] == ["caption", "url"]
    res = q(tmp_path, [str(tmp_path / "train.tsv")])
    m = res.mentions().sort("occupation")
    assert m["occupation"].to_list() == ["engineer", "nurse"] and m["url"].to_list() == [URLS[2], URLS[0]]
    assert res.files["rows"][0] == 5


def test_tsv_headerless_cc12m_gz(tmp_path):
    # CC12M: url<TAB>caption, no header, gzip-compressed
    data = "".join(f"{u}\t{c}\n" for c, u in _tsv_rows()).encode()
    (tmp_path / "cc12m.tsv.gz").write_bytes(gzip.compress(data))
    m = q(tmp_path, [str(tmp_path / "cc12m.tsv.gz")]).mentions().sort("occupation")
    assert m["text"].to_list() == [CAPS[2], CAPS[0]] and m["url"].to_list() == [URLS[2], URLS[0]]


def test_jsonl(tmp_path):
    lines = [json.dumps({"url": u, "caption": c, "extra": {"a": 1}}) for c, u in zip(CAPS, URLS)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    check(q(tmp_path, [str(tmp_path / "c.jsonl")]))


def _tar(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_tar_and_img2dataset_parquet(tmp_path):
    d = tmp_path / "i2d"
    d.mkdir()
    samples = []
    for i, (c, u) in enumerate(zip(CAPS, URLS)):
        members = {"jpg": b"\xff\xd8fake", "json": json.dumps({"url": u, "caption": c, "key": f"{i:09d}"}).encode()}
        if c is not None:
            members["txt"] = c.encode()
        samples.append((f"{i:09d}", members))
    _tar(d / "00000.tar", samples)
    res = q(tmp_path, [str(d / "00000.tar")])
    m = res.mentions().sort("occupation")
    assert m["occupation"].to_list() == ["engineer", "nurse"] and m["url"].to_list() == [URLS[2], URLS[0]]
    assert m["id_rule"].to_list() == ["url+text", "url+text"]
    assert res.files["rows"][0] == 5 and res.files["null_text"][0] == 1


def test_fsspec_memory_and_file_urls(tmp_path):
    buf = io.BytesIO()
    pl.DataFrame({"URL": URLS, "TEXT": CAPS}).write_parquet(buf)
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a/part-0.parquet", buf.getvalue())
    fs.pipe("/corpus/a/part-1.parquet", buf.getvalue())
    assert resolve_inputs("memory://corpus/a/*.parquet") == ["memory:///corpus/a/part-0.parquet", "memory:///corpus/a/part-1.parquet"]
    res = query_corpus("memory://corpus/a/*.parquet", tmp_path / "m", names=None, progress=False)
    assert res.files["rows"].to_list() == [5, 5] and read_mentions(tmp_path / "m").height == 4
    pl.DataFrame({"URL": URLS, "TEXT": CAPS}).write_parquet(tmp_path / "f.parquet")
    check(q(tmp_path, [f"file://{tmp_path / 'f.parquet'}"]))
    fs.rm("/corpus", recursive=True)


def test_globs_and_folders(tmp_path):
    d = tmp_path / "c"
    (d / "sub").mkdir(parents=True)
    for name in ("a.parquet", "sub/b.parquet", "_skip.parquet", ".hidden.parquet"):
        pl.DataFrame({"TEXT": CAPS, "URL": URLS}).write_parquet(d / name)
    (d / "notes.md").write_text("x")
    assert [p.rsplit("/", 1)[1] for p in resolve_inputs(str(d))] == ["a.parquet", "b.parquet"]
    assert [p.rsplit("/", 1)[1] for p in resolve_inputs(str(d / "**" / "*.parquet"))] == ["a.parquet", "b.parquet"]
    with pytest.raises(BiasampError, match="not found"):
        resolve_inputs(str(d / "missing.parquet"))
    with pytest.raises(BiasampError, match="no corpus files"):
        resolve_inputs(str(d / "*.csv"))
    with pytest.raises(BiasampError, match="unsupported"):
        resolve_inputs(str(d / "notes.md"))


def test_column_overrides(tmp_path):
    pl.DataFrame({"alt_title": CAPS, "img": URLS, "TEXT": ["x"] * 5}).write_parquet(tmp_path / "o.parquet")
    res = q(tmp_path, [str(tmp_path / "o.parquet")], text_column="ALT_TITLE", url_column="img")
    assert sorted(res.mentions()["occupation"].to_list()) == ["engineer", "nurse"]
    cf = CorpusFile(str(tmp_path / "o.parquet"), text_column="nope")
    with pytest.raises(BiasampError, match="no text column 'nope'; columns found: alt_title, img, TEXT"):
        cf.lazy()
